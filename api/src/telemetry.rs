//! Logging: JSON lines for machines (the default when stdout is not a terminal), readable text
//! for people.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{GlobalArgs, LogFormat};

pub fn init(global: &GlobalArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&global.log)
        .map_err(|e| anyhow::anyhow!("WFO_LOG is not a valid log filter: {e}"))?;
    let json = match global.log_format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
