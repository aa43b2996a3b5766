//! Where a client command finds dormant's API and the token that opens it.

use std::path::{Path, PathBuf};

use clap::Args;

use super::client::ApiClient;
use crate::config::ServeConfig;
use crate::token::ADMIN_TOKEN_FILE;

/// Where the API is and how to prove who we are.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// dormant's API URL.
    #[arg(
        long,
        env = "DORMANT_URL",
        default_value = "http://127.0.0.1:7070",
        value_name = "URL"
    )]
    pub url: String,
    /// API token. Default: the admin token dormant keeps in `<data-dir>/admin-token`.
    #[arg(
        long,
        env = "DORMANT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// dormant's data dir, where the admin token is read from when no token is given
    /// (the same setting as `serve --data-dir`).
    #[arg(
        long,
        env = "DORMANT_DATA_DIR",
        default_value = ServeConfig::DEFAULT_DATA_DIR,
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl ClientArgs {
    /// A client for the API, with the token from `--token`/`DORMANT_TOKEN`, else the admin token
    /// in the data dir.
    pub fn connect(&self) -> anyhow::Result<ApiClient> {
        let token = match self.token.as_deref().map(str::trim) {
            Some(token) if !token.is_empty() => token.to_owned(),
            _ => token_from_data_dir(&self.data_dir)?,
        };
        ApiClient::new(&self.url, token)
    }
}

/// The admin token in `<data_dir>/admin-token`; a missing or empty file is an error saying
/// everywhere the token was looked for.
fn token_from_data_dir(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    let why = match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => "it is empty".to_owned(),
        Err(e) => e.to_string(),
    };
    anyhow::bail!(
        "no API token: --token and DORMANT_TOKEN are not set, and the admin token file {} \
         cannot be used ({why}); pass --token, or point --data-dir (DORMANT_DATA_DIR) at the \
         data dir of the running `dormant serve`",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
    }

    fn client(args: &[&str]) -> ClientArgs {
        Cli::try_parse_from(std::iter::once("dormant").chain(args.iter().copied()))
            .unwrap()
            .client
    }

    #[test]
    fn the_token_comes_from_the_flag_else_the_data_dir() {
        let dir = std::env::temp_dir().join(format!("dormant-cli-{}", crate::token::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(ADMIN_TOKEN_FILE), "from-the-file\n").unwrap();
        let data_dir = dir.to_str().unwrap();
        assert_eq!(
            token_from_data_dir(&client(&["--data-dir", data_dir]).data_dir).unwrap(),
            "from-the-file"
        );
        // A flag beats the file; the client accepts both.
        assert!(client(&["--data-dir", data_dir, "--token", "t"])
            .connect()
            .is_ok());

        std::fs::write(dir.join(ADMIN_TOKEN_FILE), "  \n").unwrap();
        let err = client(&["--data-dir", data_dir])
            .connect()
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("empty") && err.contains(data_dir), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();

        let err = client(&["--data-dir", data_dir])
            .connect()
            .err()
            .unwrap()
            .to_string();
        for named in ["--token", "DORMANT_TOKEN", "DORMANT_DATA_DIR", data_dir] {
            assert!(err.contains(named), "{named} not in: {err}");
        }
    }
}
