//! OSV advisory records (rampart-vuln::osv) and what matching does with them: every bound
//! parsed under its ecosystem's version rules, and components at the listed and bound
//! versions matched against the index.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_vuln::component::Component;
use rampart_vuln::matching::AdvisoryIndex;
use rampart_vuln::osv::parse_advisory;

fuzz_target!(|data: &[u8]| {
    let Ok(advisory) = parse_advisory(data) else {
        return;
    };
    let mut components = Vec::new();
    for affected in &advisory.affected {
        let Some(package) = &affected.package else { continue };
        let purl_type = match package.ecosystem.as_osv() {
            "PyPI" => "pypi",
            "crates.io" => "cargo",
            "npm" => "npm",
            "Go" => "golang",
            "Maven" => "maven",
            "Debian" => "deb",
            "Alpine" => "apk",
            _ => "generic",
        };
        let versions = affected
            .versions
            .iter()
            .cloned()
            .chain(affected.ranges.iter().flat_map(|r| r.events.iter().map(|e| e.version().to_owned())));
        for version in versions.take(64) {
            components.push(Component {
                reference: String::new(),
                name: package.name.clone(),
                version,
                purl: Some(format!("pkg:{purl_type}/{}", package.name)),
                cpe: None,
                group: None,
            });
        }
    }
    let index = AdvisoryIndex::build([advisory]);
    let _ = index.match_components(&components);
});
