//! `rampart token create|list|revoke`: management API tokens, in one of two places:
//!
//! - through the management API (`--api URL --token ADMIN --ca CA.pem`, or `RAMPART_API_*`):
//!   the usual way, with an admin token, from anywhere the API is reachable;
//! - in the server's database (`--db URL`, or `RAMPART_DB`): on the server's host, for the
//!   first admin token, when no token exists yet to call the API with.
//!
//! Both write the same audit record (`token.created`, `token.revoked`).

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

use crate::shared::api_client::{ApiClient, OptionalApiArgs, path_segment};
use crate::shared::database::{cli_actor, connect_existing, runtime};
use crate::shared::now_unix;
use crate::shared::table::{Align, Table, cell, when};

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once on stdout (store it, it cannot be shown
    /// again).
    Create(CreateArgs),
    /// List tokens (never their secrets).
    List(Place),
    /// Revoke a token by id.
    Revoke(RevokeArgs),
}

/// Where the tokens are: through the API, or in the database.
#[derive(Args)]
#[command(
    after_help = "Give either the management API (--api, --token with an admin token, \
--ca) or, on the server's host for the first admin token, its database (--db)."
)]
pub struct Place {
    /// The server's database, opened directly (bootstrapping: the first admin token), e.g.
    /// sqlite://rampart-server.db or postgres://USER@HOST/DB.
    #[arg(long, env = "RAMPART_DB")]
    db: Option<String>,
    /// Through the management API, with an admin token.
    #[command(flatten)]
    api: OptionalApiArgs,
    /// Print JSON (the API's answer) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct CreateArgs {
    /// admin, operator, viewer, auditor or monitor (reports the log monitor's alerts only).
    #[arg(long)]
    role: String,
    /// What the token is for (shown in listings and the audit log).
    #[arg(long, default_value = "")]
    name: String,
    #[command(flatten)]
    place: Place,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// The token's id (from `rampart token list`).
    id: String,
    #[command(flatten)]
    place: Place,
}

/// The place resolved: the API client or the database URL.
enum Store {
    Api(ApiClient),
    Db(String),
}

impl Place {
    fn store(&self) -> anyhow::Result<Store> {
        match (&self.db, self.api.given()) {
            (Some(_), true) => anyhow::bail!(
                "give either --db (the database) or --api/--token/--ca (the management API), not both; unset RAMPART_DB or RAMPART_API_URL if one comes from the environment"
            ),
            (Some(db), false) => Ok(Store::Db(db.clone())),
            (None, true) => Ok(Store::Api(self.api.client()?)),
            (None, false) => anyhow::bail!(
                "say where the tokens are: --api URL --token ADMIN_TOKEN --ca CA.pem (the management API), or --db URL on the server's host to create the first admin token"
            ),
        }
    }
}

pub fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create(a) => create(&a),
        TokenCommand::List(place) => {
            let answer = match place.store()? {
                Store::Api(client) => client.ok("GET", "/api/v1/tokens", None)?,
                Store::Db(url) => runtime()?.block_on(async move {
                    let db = connect_existing(&url).await?;
                    let tokens = db.list_tokens().await?;
                    db.close().await;
                    anyhow::Ok(json!({"tokens": tokens}))
                })?,
            };
            if place.json {
                crate::shared::table::print_json(&answer)
            } else {
                print!("{}", tokens_table(&answer));
                Ok(())
            }
        }
        TokenCommand::Revoke(a) => {
            let answer = match a.place.store()? {
                Store::Api(client) => {
                    client.ok(
                        "DELETE",
                        &format!("/api/v1/tokens/{}", path_segment(&a.id)),
                        None,
                    )?;
                    json!({"id": a.id, "revoked": true})
                }
                Store::Db(url) => revoke_in_db(&url, &a.id)?,
            };
            if a.place.json {
                crate::shared::table::print_json(&answer)
            } else {
                println!("revoked token {}", a.id);
                Ok(())
            }
        }
    }
}

fn create(a: &CreateArgs) -> anyhow::Result<()> {
    let role = rampart_server::Role::parse(&a.role).with_context(|| {
        format!(
            "unknown role {:?}: use admin, operator, viewer, auditor or monitor",
            a.role
        )
    })?;
    let answer = match a.place.store()? {
        Store::Api(client) => client.ok(
            "POST",
            "/api/v1/tokens",
            Some(json!({"role": role.as_str(), "name": a.name})),
        )?,
        Store::Db(url) => {
            let name = a.name.clone();
            runtime()?.block_on(async move {
                let db = rampart_db::Db::connect(&url).await?;
                let audit = rampart_server::audit::AuditWriter::new(db.clone());
                let created = rampart_server::management::create_token(
                    &db,
                    &audit,
                    role,
                    &name,
                    &cli_actor(),
                    now_unix(),
                )
                .await?;
                db.close().await;
                anyhow::Ok(json!({"token": created.token, "secret": created.secret}))
            })?
        }
    };
    if a.place.json {
        return crate::shared::table::print_json(&answer);
    }
    eprintln!(
        "created {} token {} (store the secret now; it is not shown again):",
        role.as_str(),
        cell(&answer["token"]["id"])
    );
    // The secret alone on stdout, so `T=$(rampart token create ...)` captures it.
    println!("{}", cell(&answer["secret"]));
    Ok(())
}

fn revoke_in_db(url: &str, id: &str) -> anyhow::Result<Value> {
    let (url, id) = (url.to_owned(), id.to_owned());
    runtime()?.block_on(async move {
        let db = connect_existing(&url).await?;
        let audit = rampart_server::audit::AuditWriter::new(db.clone());
        let revoked = audit
            .write(
                now_unix(),
                &cli_actor(),
                "token.revoked",
                &id,
                json!({}),
                |line| {
                    let (db, id) = (db.clone(), id.clone());
                    async move { db.revoke_token(&id, &line).await }
                },
            )
            .await?;
        db.close().await;
        anyhow::ensure!(
            revoked,
            "no unrevoked token {id:?}; see `rampart token list`"
        );
        Ok(json!({"id": id, "revoked": true}))
    })
}

/// The tokens as a table (`{"tokens": [...]}`, as the API lists them).
pub fn tokens_table(answer: &Value) -> String {
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("ROLE", Align::Left),
        ("CREATED", Align::Left),
        ("STATUS", Align::Left),
        ("NAME", Align::Left),
    ]);
    for t in answer["tokens"].as_array().into_iter().flatten() {
        table.row([
            cell(&t["id"]),
            cell(&t["role"]),
            when(&t["created"]),
            if t["revoked"] == true {
                "revoked".into()
            } else {
                "active".into()
            },
            cell(&t["name"]),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_read_as_a_table_without_secrets() {
        let answer = json!({"tokens": [
            {"id": "a1b2", "role": "admin", "name": "first", "created": 86_400, "revoked": false},
            {"id": "c3d4", "role": "viewer", "name": "", "created": 86_400, "revoked": true}]});
        assert_eq!(
            tokens_table(&answer),
            "ID    ROLE    CREATED               STATUS   NAME\n\
             a1b2  admin   1970-01-02T00:00:00Z  active   first\n\
             c3d4  viewer  1970-01-02T00:00:00Z  revoked\n"
        );
    }
}
