//! One module per subcommand that runs a component.

pub(crate) mod calc;
pub(crate) mod call;
pub(crate) mod gateway;
pub(crate) mod lb;
pub(crate) mod static_files;
pub(crate) mod stats;
pub(crate) mod top;
pub(crate) mod up;
