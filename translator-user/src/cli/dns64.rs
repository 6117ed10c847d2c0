use std::path::PathBuf;

use anyhow::anyhow;

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Dns64Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Dns64Command {
    /// Show what the DNS64 server would answer for a name (asks the configured upstreams).
    Synth {
        /// Configuration file with a [dns64] table.
        #[arg(long, short)]
        config: PathBuf,
        /// The name to look up.
        name: String,
        /// Record type.
        #[arg(long, short = 't', default_value = "AAAA")]
        qtype: String,
    },
}

pub fn main(a: Args) -> anyhow::Result<()> {
    match a.command {
        Dns64Command::Synth {
            config,
            name,
            qtype,
        } => {
            let cfg = Config::load(&config)?;
            let d = cfg.dns64.ok_or_else(|| {
                anyhow!(
                    "{}: no [dns64] table; add one with upstreams = [...]",
                    config.display()
                )
            })?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let text = rt.block_on(crate::dns64::synthesize_once(&d, &name, &qtype))?;
            print!("{text}");
            Ok(())
        }
    }
}
