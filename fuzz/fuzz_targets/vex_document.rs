//! VEX documents (rampart-vuln::vex): CycloneDX VEX and OpenVEX. Every statement read must
//! decide for the component its first product names.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_vuln::component::Component;
use rampart_vuln::vex::{VexSet, parse_vex};

fuzz_target!(|data: &[u8]| {
    let Ok(statements) = parse_vex(data) else {
        return;
    };
    let set = VexSet::new(statements.clone());
    for statement in statements.iter().take(64) {
        let Some(product) = statement.products.first() else {
            continue;
        };
        let component = Component {
            reference: product.clone(),
            name: "fuzzed".into(),
            ..Component::default()
        };
        assert!(
            set.applies(&[statement.vulnerability.as_str()], &component)
                .is_some(),
            "a statement must apply to the product it names"
        );
    }
});
