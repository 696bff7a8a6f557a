//! One module per subcommand that runs a component.

pub(crate) mod calc;
