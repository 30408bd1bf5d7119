//! U-Boot environments (rampart-boot::ubootenv): fw_env.config text and environment copies.
//! Input: config text, 0xff, two environment blocks (the first byte chooses the size).
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_boot::ubootenv::{self, FlagScheme};
use rampart_fuzz::split_once;

fuzz_target!(|data: &[u8]| {
    let (config, env) = split_once(data);
    if let Ok(text) = std::str::from_utf8(config)
        && let Ok(cfg) = ubootenv::parse_config(text)
    {
        let _ = cfg.env_size();
        let _ = cfg.is_redundant();
    }
    let Some((&size, blocks)) = env.split_first() else {
        return;
    };
    let env_size = usize::from(size).max(1) * 16;
    let (first, second) = blocks.split_at(blocks.len().min(env_size));
    let _ = ubootenv::parse_copy(first, env_size, false);
    for scheme in [FlagScheme::Incremental, FlagScheme::Boolean] {
        let copies = [
            ubootenv::parse_copy(first, env_size, true),
            ubootenv::parse_copy(second, env_size, true),
        ];
        if let Ok(selected) = ubootenv::select(copies, scheme) {
            let flags = selected.copy.flags;
            if let Ok(block) = ubootenv::serialize(&selected.copy.vars, env_size, flags) {
                let again = ubootenv::parse_copy(&block, env_size, true).expect("rewritten copy");
                assert_eq!(again.vars, selected.copy.vars);
            }
            let _ = ubootenv::write_plan([first, second], env_size, scheme);
        }
    }
});
