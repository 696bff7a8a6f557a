//! One module per subcommand that runs a component.

pub(crate) mod call;
pub(crate) mod gateway;
pub(crate) mod lb;
pub(crate) mod service;
pub(crate) mod static_files;
pub(crate) mod top;
pub(crate) mod up;
