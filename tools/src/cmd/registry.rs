//! `onoal registry serve`: the registry service ([`onoal_mesh::registry`]).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use serde_json::json;

use onoal_mesh::http::HttpConfig;
use onoal_mesh::registry::RegistryConfig;
use onoal_mesh::registry::server;

use crate::cli::{Cli, RegistryCommand};
use crate::cmd::mesh::{runtime, shutdown_signal};
use crate::cmd::serve::token;
use crate::output::print;

pub(crate) fn run(cli: &Cli, what: &RegistryCommand) -> Result<ExitCode> {
    let RegistryCommand::Serve { listen, api_key_file, tls_cert, tls_key, expire_after } = what;
    if !(10..=86_400).contains(expire_after) {
        usage_bail!("--expire-after {expire_after} is out of range: give 10 to 86400 seconds");
    }
    let addr = listen
        .parse()
        .or_else(|_| {
            std::net::ToSocketAddrs::to_socket_addrs(listen.as_str())
                .ok()
                .and_then(|mut a| a.next())
                .ok_or(())
        })
        .map_err(|()| anyhow!("--listen {listen:?} is not HOST:PORT"))?;
    let mut http = HttpConfig::new(addr);
    http.tls = tls_cert.clone().zip(tls_key.clone());
    http.token = match api_key_file {
        Some(p) => Some(token(p).context("the registry's API key")?),
        None => None,
    };
    server::check(&http).map_err(|e| anyhow!(e))?;
    let config = RegistryConfig {
        expire_after: Duration::from_secs(*expire_after),
        ..RegistryConfig::default()
    };
    let rt = runtime()?;
    rt.block_on(async {
        let (bound, task) = server::serve(&http, config).await.map_err(|e| anyhow!(e))?;
        let url = format!("{}://{bound}", if http.tls.is_some() { "https" } else { "http" });
        print(cli, json!({ "registry": url, "expire_after_s": expire_after }), || {
            format!(
                "registry on {url}\nledgers register with: onoal serve --registry {url}{}",
                if http.token.is_some() { " --registry-api-key-file FILE" } else { "" }
            )
        });
        let _ = std::io::stdout().flush();
        shutdown_signal().await;
        task.abort();
        Ok(ExitCode::SUCCESS)
    })
}
