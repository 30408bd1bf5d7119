//! NVD CVE API 2.0 documents and single records (rampart-vuln::nvd) and what CPE matching does with them: every
//! criterion parsed as a CPE name with its version bounds, and components at each criterion's
//! CPE and bounds matched against the index.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_vuln::component::Component;
use rampart_vuln::nvd::{CpeIndex, parse_nvd_document, parse_nvd_item};

fuzz_target!(|data: &[u8]| {
    // The same bytes as one stored record (`{"cve":{...}}`), as the server re-reads them.
    if let Ok(record) = parse_nvd_item(data) {
        let _ = record.severity();
    }
    let Ok(advisories) = parse_nvd_document(data) else {
        return;
    };
    let mut components = Vec::new();
    for advisory in &advisories {
        let _ = advisory.severity();
        for criterion in advisory.criteria.iter().take(64) {
            components.push(Component {
                name: "component".to_owned(),
                cpe: Some(criterion.criteria.clone()),
                ..Component::default()
            });
            let bounds = &criterion.bounds;
            for version in [
                &bounds.start_including,
                &bounds.start_excluding,
                &bounds.end_including,
                &bounds.end_excluding,
            ]
            .into_iter()
            .flatten()
            {
                // By name, with the criterion's version bound as the component's version.
                components.push(Component {
                    name: "busybox".to_owned(),
                    version: version.clone(),
                    ..Component::default()
                });
            }
        }
    }
    let index = CpeIndex::build(advisories);
    let _ = index.match_cpe_components(&components);
});
