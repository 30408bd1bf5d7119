//! `rampart ddi`: hawkBit DDI tenants and device tokens, through the management API.

use clap::Subcommand;
use serde_json::{Value, json};

use crate::shared::api_client::ApiArgs;

#[derive(Subcommand)]
pub enum DdiCommand {
    /// Tenants: the `/{tenant}/controller/v1/...` prefixes and how their devices authenticate.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Issue a device's TargetToken (shown once); registers the device if it is new.
    Token {
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long, default_value = "DEFAULT")]
        tenant: String,
        /// The device's hardware id, which releases and campaigns match (DDI clients do not
        /// report one; a configData attribute `hardware_id` also sets it).
        #[arg(long)]
        hardware_id: Option<String>,
        /// The controller id (the device id).
        device: String,
    },
    /// A device's DDI actions, newest first.
    Actions {
        #[command(flatten)]
        api: ApiArgs,
        device: String,
    },
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; with --gateway-token its gateway token is printed once.
    Create {
        #[command(flatten)]
        api: ApiArgs,
        name: String,
        /// Refuse per-device TargetTokens (on by default).
        #[arg(long)]
        no_target_token: bool,
        /// Accept the tenant's GatewayToken (one token for all its devices).
        #[arg(long)]
        gateway_token: bool,
        /// Accept device certificates (mutual TLS) from the manufacturer CA.
        #[arg(long)]
        mtls: bool,
    },
    /// Change a tenant's authentication; `--rotate-gateway-token` prints a new token once.
    Set {
        #[command(flatten)]
        api: ApiArgs,
        name: String,
        #[arg(long)]
        target_token: Option<bool>,
        #[arg(long)]
        gateway_token: Option<bool>,
        #[arg(long)]
        mtls: Option<bool>,
        #[arg(long)]
        rotate_gateway_token: bool,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn print_tenant(r: &Value) {
    let t = &r["tenant"];
    println!(
        "tenant {}: target tokens {}, gateway token {}, certificates {}",
        t["name"].as_str().unwrap_or("?"),
        on(&t["target_token"]),
        on(&t["gateway_token"]),
        on(&t["mtls"])
    );
    if let Some(token) = r["gateway_token"].as_str() {
        eprintln!("gateway token (shown once; store it now):");
        println!("{token}");
    }
}

fn on(v: &Value) -> &'static str {
    if v.as_bool() == Some(true) {
        "on"
    } else {
        "off"
    }
}

pub fn run(cmd: DdiCommand) -> anyhow::Result<()> {
    match cmd {
        DdiCommand::Tenant(TenantCommand::Create {
            api,
            name,
            no_target_token,
            gateway_token,
            mtls,
        }) => {
            let r = api.client()?.ok(
                "POST",
                "/api/v1/ddi/tenants",
                Some(json!({"name": name, "target_token": !no_target_token,
                    "gateway_token": gateway_token, "mtls": mtls})),
            )?;
            print_tenant(&r);
        }
        DdiCommand::Tenant(TenantCommand::Set {
            api,
            name,
            target_token,
            gateway_token,
            mtls,
            rotate_gateway_token,
        }) => {
            let mut body = json!({"rotate_gateway_token": rotate_gateway_token});
            for (key, v) in [
                ("target_token", target_token),
                ("gateway_token", gateway_token),
                ("mtls", mtls),
            ] {
                if let Some(v) = v {
                    body[key] = json!(v);
                }
            }
            let r = api
                .client()?
                .ok("PUT", &format!("/api/v1/ddi/tenants/{name}"), Some(body))?;
            print_tenant(&r);
        }
        DdiCommand::Tenant(TenantCommand::List { api }) => {
            let r = api.client()?.ok("GET", "/api/v1/ddi/tenants", None)?;
            for t in r["tenants"].as_array().into_iter().flatten() {
                print_tenant(&json!({"tenant": t}));
            }
        }
        DdiCommand::Token {
            api,
            tenant,
            hardware_id,
            device,
        } => {
            let body = match hardware_id {
                Some(hw) => json!({"hardware_id": hw}),
                None => json!({}),
            };
            let r = api.client()?.ok(
                "POST",
                &format!("/api/v1/ddi/tenants/{tenant}/devices/{device}/token"),
                Some(body),
            )?;
            eprintln!(
                "TargetToken of {} in tenant {} (shown once; configure it on the device):",
                r["device"].as_str().unwrap_or("?"),
                r["tenant"].as_str().unwrap_or("?")
            );
            println!("{}", r["target_token"].as_str().unwrap_or(""));
        }
        DdiCommand::Actions { api, device } => {
            let r = api.client()?.ok(
                "GET",
                &format!("/api/v1/ddi/devices/{device}/actions"),
                None,
            )?;
            println!(
                "{:>8}  {:<10} {:<14} {:<28} assignment",
                "action", "state", "type", "release"
            );
            for a in r["actions"].as_array().into_iter().flatten() {
                println!(
                    "{:>8}  {:<10} {:<14} {:<28} {}",
                    a["id"],
                    a["state"].as_str().unwrap_or(""),
                    a["update_type"].as_str().unwrap_or(""),
                    a["target"].as_str().unwrap_or(""),
                    a["assignment_id"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
