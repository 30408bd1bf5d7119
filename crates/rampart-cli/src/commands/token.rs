//! `rampart token ...`: management API tokens, written straight to the server's database.

use anyhow::Context;

use crate::shared::database::{cli_actor, connect_existing, runtime};
use crate::shared::now_unix;

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once (store it, it cannot be shown again).
    Create {
        #[arg(long, env = "RAMPART_DB", default_value = "sqlite://rampart-server.db")]
        db: String,
        /// admin, operator, viewer, auditor or monitor (reports the log monitor's alerts only).
        #[arg(long)]
        role: String,
        /// What the token is for (shown in listings and the audit log).
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long, env = "RAMPART_DB", default_value = "sqlite://rampart-server.db")]
        db: String,
    },
    /// Revoke a token by id.
    Revoke {
        #[arg(long, env = "RAMPART_DB", default_value = "sqlite://rampart-server.db")]
        db: String,
        id: String,
    },
}

pub fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            TokenCommand::Create { db, role, name } => {
                let role = rampart_server::Role::parse(&role).with_context(|| {
                    format!(
                        "unknown role {role:?}: use admin, operator, viewer, auditor or monitor"
                    )
                })?;
                let db = rampart_db::Db::connect(&db).await?;
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
                eprintln!(
                    "created {} token {} (store the secret now; it is not shown again):",
                    role.as_str(),
                    created.token.id
                );
                println!("{}", created.secret);
            }
            TokenCommand::List { db } => {
                let db = connect_existing(&db).await?;
                for t in db.list_tokens().await? {
                    println!(
                        "{}  {:<8}  {}{}",
                        t.id,
                        t.role,
                        t.name,
                        if t.revoked { "  (revoked)" } else { "" }
                    );
                }
            }
            TokenCommand::Revoke { db, id } => {
                let db = rampart_db::Db::connect(&db).await?;
                let audit = rampart_server::audit::AuditWriter::new(db.clone());
                let revoked = audit
                    .write(
                        now_unix(),
                        &cli_actor(),
                        "token.revoked",
                        &id,
                        serde_json::json!({}),
                        |line| {
                            let (db, id) = (db.clone(), id.clone());
                            async move { db.revoke_token(&id, &line).await }
                        },
                    )
                    .await?;
                if !revoked {
                    anyhow::bail!("no unrevoked token {id:?}; see `rampart token list`");
                }
                println!("revoked token {id}");
            }
        }
        Ok(())
    })
}
