//! SBOM parsing: CycloneDX and SPDX fixtures written here, every limit, duplicates and the
//! dpkg status reader. Real generated SBOMs are in real_sboms.rs.

use rampart_vuln::component::Component;
use rampart_vuln::sbom::{
    MAX_COMPONENTS, MAX_FIELD_BYTES, MAX_SBOM_BYTES, MAX_SBOM_DEPTH, SbomError, SbomFormat,
    from_dpkg_status, parse_sbom, to_cyclonedx_json,
};

fn cyclonedx(spec_version: &str, components: &str) -> Vec<u8> {
    format!(
        r#"{{"bomFormat":"CycloneDX","specVersion":"{spec_version}","version":1,
            "metadata":{{"component":{{"type":"firmware","name":"gateway-image","version":"4.2"}}}},
            "components":{components}}}"#
    )
    .into_bytes()
}

const NESTED: &str = r#"[
  {"type":"library","bom-ref":"py-requests","name":"requests","version":"2.19.0",
   "purl":"pkg:pypi/requests@2.19.0","licenses":[{"license":{"id":"Apache-2.0"}}],
   "components":[
     {"type":"library","name":"urllib3","version":"1.24.1","purl":"pkg:pypi/urllib3@1.24.1",
      "components":[{"type":"library","name":"six","version":"1.16.0"}]}
   ]},
  {"type":"library","group":"org.apache.logging.log4j","name":"log4j-core","version":"2.14.1",
   "purl":"pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"},
  {"type":"firmware","name":"u-boot","version":"2023.04",
   "cpe":"cpe:2.3:a:denx:u-boot:2023.04:*:*:*:*:*:*:*"}
]"#;

#[test]
fn cyclonedx_nested_components_are_flattened_with_their_fields_for_1_4_to_1_6() {
    for spec in ["1.4", "1.5", "1.6"] {
        let sbom = parse_sbom(&cyclonedx(spec, NESTED)).unwrap();
        assert_eq!(sbom.format, SbomFormat::CycloneDx);
        assert_eq!(sbom.spec_version, spec);
        assert_eq!(sbom.duplicates, 0);
        let names: Vec<&str> = sbom.components.iter().map(|c| c.name.as_str()).collect();
        // Parents before their children, in document order; the metadata's subject is the
        // product, not one of its components.
        assert_eq!(
            names,
            ["requests", "urllib3", "six", "log4j-core", "u-boot"]
        );
        assert_eq!(
            sbom.components[0],
            Component {
                reference: "py-requests".into(),
                name: "requests".into(),
                version: "2.19.0".into(),
                purl: Some("pkg:pypi/requests@2.19.0".into()),
                cpe: None,
                group: None,
            }
        );
        assert_eq!(
            sbom.components[3].group.as_deref(),
            Some("org.apache.logging.log4j")
        );
        assert_eq!(
            sbom.components[4].cpe.as_deref(),
            Some("cpe:2.3:a:denx:u-boot:2023.04:*:*:*:*:*:*:*")
        );
        assert_eq!(sbom.components[2].purl, None);
    }
}

#[test]
fn spdx_packages_are_read_with_purl_and_cpe_references() {
    let doc = br#"{
      "spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"gateway",
      "dataLicense":"CC0-1.0","documentNamespace":"https://example.invalid/gateway",
      "packages":[
        {"SPDXID":"SPDXRef-busybox","name":"busybox","versionInfo":"1.36.1",
         "externalRefs":[
           {"referenceCategory":"SECURITY","referenceType":"cpe23Type",
            "referenceLocator":"cpe:2.3:a:busybox:busybox:1.36.1:*:*:*:*:*:*:*"}]},
        {"SPDXID":"SPDXRef-jinja2","name":"Jinja2","versionInfo":"2.10",
         "externalRefs":[
           {"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl",
            "referenceLocator":"pkg:pypi/jinja2@2.10"},
           {"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl",
            "referenceLocator":"pkg:pypi/jinja2@2.10?second=1"}]},
        {"SPDXID":"SPDXRef-kernel","name":"linux"}
      ],
      "relationships":[{"spdxElementId":"SPDXRef-DOCUMENT","relationshipType":"DESCRIBES",
                        "relatedSpdxElement":"SPDXRef-busybox"}]
    }"#;
    let sbom = parse_sbom(doc).unwrap();
    assert_eq!(sbom.format, SbomFormat::Spdx);
    assert_eq!(sbom.spec_version, "SPDX-2.3");
    assert_eq!(sbom.components.len(), 3);
    assert_eq!(sbom.components[0].reference, "SPDXRef-busybox");
    assert_eq!(
        sbom.components[0].cpe.as_deref(),
        Some("cpe:2.3:a:busybox:busybox:1.36.1:*:*:*:*:*:*:*")
    );
    assert_eq!(
        sbom.components[1].purl.as_deref(),
        Some("pkg:pypi/jinja2@2.10")
    );
    assert_eq!(
        sbom.components[2].version, "",
        "a missing versionInfo is empty"
    );
}

#[test]
fn sbom_over_the_size_limit_is_refused_before_parsing() {
    // Not JSON at all: only the size check can refuse it as too large.
    let oversized = vec![b' '; MAX_SBOM_BYTES + 1];
    assert_eq!(
        parse_sbom(&oversized),
        Err(SbomError::TooLarge {
            size: MAX_SBOM_BYTES + 1,
            max: MAX_SBOM_BYTES
        })
    );
    let err = from_dpkg_status(&" ".repeat(MAX_SBOM_BYTES + 1)).unwrap_err();
    assert!(matches!(err, SbomError::TooLarge { .. }), "{err}");
}

#[test]
fn sbom_nested_deeper_than_the_limit_is_refused_before_serde_recurses() {
    // Nested components, each level an object in an array: two levels per component.
    let mut doc = String::from(r#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":"#);
    let levels = MAX_SBOM_DEPTH / 2 + 1;
    for _ in 0..levels {
        doc.push_str(r#"[{"type":"library","name":"x","components":"#);
    }
    doc.push_str("[]");
    for _ in 0..levels {
        doc.push_str("}]");
    }
    doc.push('}');
    let err = parse_sbom(doc.as_bytes()).unwrap_err();
    assert!(
        matches!(err, SbomError::TooDeep { max, .. } if max == MAX_SBOM_DEPTH),
        "{err}"
    );
    // Far deeper than serde_json's own guard: refused by ours, with our message.
    let bomb = "[".repeat(100_000);
    assert!(matches!(
        parse_sbom(bomb.as_bytes()),
        Err(SbomError::TooDeep { .. })
    ));
}

#[test]
fn sbom_with_more_components_than_the_limit_is_refused() {
    let one = r#"{"type":"library","name":"a"}"#;
    let list = format!("[{}]", vec![one; MAX_COMPONENTS + 1].join(","));
    assert_eq!(
        parse_sbom(&cyclonedx("1.6", &list)),
        Err(SbomError::TooManyComponents {
            max: MAX_COMPONENTS
        })
    );
    // Exactly the limit is fine (duplicates are counted toward it, then dropped).
    let list = format!("[{}]", vec![one; MAX_COMPONENTS].join(","));
    let sbom = parse_sbom(&cyclonedx("1.6", &list)).unwrap();
    assert_eq!(
        (sbom.components.len(), sbom.duplicates),
        (1, MAX_COMPONENTS - 1)
    );
}

#[test]
fn nested_components_count_toward_the_component_limit() {
    let child = r#"{"type":"library","name":"c"}"#;
    let children = format!("[{}]", vec![child; MAX_COMPONENTS].join(","));
    let list = format!(r#"[{{"type":"library","name":"parent","components":{children}}}]"#);
    assert_eq!(
        parse_sbom(&cyclonedx("1.5", &list)),
        Err(SbomError::TooManyComponents {
            max: MAX_COMPONENTS
        })
    );
}

#[test]
fn spdx_packages_count_toward_the_component_limit() {
    let one = r#"{"SPDXID":"SPDXRef-a","name":"a"}"#;
    let doc = format!(
        r#"{{"spdxVersion":"SPDX-2.3","packages":[{}]}}"#,
        vec![one; MAX_COMPONENTS + 1].join(",")
    );
    assert_eq!(
        parse_sbom(doc.as_bytes()),
        Err(SbomError::TooManyComponents {
            max: MAX_COMPONENTS
        })
    );
}

#[test]
fn field_longer_than_the_limit_is_refused() {
    let long = "v".repeat(MAX_FIELD_BYTES + 1);
    let list = format!(
        r#"[{{"type":"library","name":"ok","version":"1"}},{{"type":"library","name":"x","version":"{long}"}}]"#
    );
    assert_eq!(
        parse_sbom(&cyclonedx("1.6", &list)),
        Err(SbomError::FieldTooLong {
            field: "version",
            position: 1,
            len: MAX_FIELD_BYTES + 1,
            max: MAX_FIELD_BYTES
        })
    );
    let spdx = format!(
        r#"{{"spdxVersion":"SPDX-2.3","packages":[{{"name":"x","externalRefs":[{{"referenceType":"purl","referenceLocator":"pkg:pypi/{long}"}}]}}]}}"#
    );
    assert!(matches!(
        parse_sbom(spdx.as_bytes()),
        Err(SbomError::FieldTooLong { field: "purl", .. })
    ));
    let at_limit = "n".repeat(MAX_FIELD_BYTES);
    let list = format!(r#"[{{"type":"library","name":"{at_limit}"}}]"#);
    assert!(parse_sbom(&cyclonedx("1.6", &list)).is_ok());
}

#[test]
fn duplicate_components_are_kept_once_and_counted() {
    let list = r#"[
      {"type":"library","name":"requests","version":"2.19.0","purl":"pkg:pypi/requests@2.19.0"},
      {"type":"library","name":"requests-again","version":"2.19.0","purl":"pkg:pypi/requests@2.19.0"},
      {"type":"firmware","name":"busybox","version":"1.36.1"},
      {"type":"firmware","name":"busybox","version":"1.36.1",
       "components":[{"type":"firmware","name":"busybox","version":"1.36.1"}]},
      {"type":"firmware","name":"busybox","version":"1.35.0"},
      {"type":"library","group":"org.a","name":"core","version":"1"},
      {"type":"library","group":"org.b","name":"core","version":"1"}
    ]"#;
    let sbom = parse_sbom(&cyclonedx("1.6", list)).unwrap();
    // Same purl (the first name wins); busybox 1.36.1 three times without a purl; another
    // busybox version and another group are different components.
    assert_eq!(sbom.duplicates, 3);
    let kept: Vec<(&str, &str)> = sbom
        .components
        .iter()
        .map(|c| (c.name.as_str(), c.version.as_str()))
        .collect();
    assert_eq!(
        kept,
        [
            ("requests", "2.19.0"),
            ("busybox", "1.36.1"),
            ("busybox", "1.35.0"),
            ("core", "1"),
            ("core", "1")
        ]
    );
}

#[test]
fn unknown_spec_version_is_refused_naming_the_supported_ones() {
    let err = parse_sbom(&cyclonedx("1.7", "[]")).unwrap_err();
    assert_eq!(
        err,
        SbomError::UnsupportedSpecVersion {
            format: SbomFormat::CycloneDx,
            found: "1.7".into(),
            supported: "1.2, 1.3, 1.4, 1.5, 1.6".into()
        }
    );
    assert!(
        err.to_string()
            .contains("supported: 1.2, 1.3, 1.4, 1.5, 1.6")
    );
    let err = parse_sbom(br#"{"spdxVersion":"SPDX-3.0","packages":[]}"#).unwrap_err();
    assert!(err.to_string().contains("SPDX-2.2, SPDX-2.3"), "{err}");
    let err = parse_sbom(br#"{"bomFormat":"CycloneDX","components":[]}"#).unwrap_err();
    assert!(
        matches!(&err, SbomError::UnsupportedSpecVersion { found, .. } if found.is_empty()),
        "{err}"
    );
}

#[test]
fn documents_that_are_not_sboms_are_refused_with_a_reason() {
    let cases: [(&[u8], &str); 10] = [
        (
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":0}"#,
            "\"version\" must be an integer",
        ),
        (
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5","serialNumber":"42"}"#,
            "urn:uuid:",
        ),
        (
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5","metadata":[]}"#,
            "\"metadata\" must be an object",
        ),
        (b"not json", "not valid JSON"),
        (b"[1,2]", "malformed"),
        (
            br#"{"bomFormat":"SPDX","specVersion":"1.5"}"#,
            "\"bomFormat\" is \"SPDX\"",
        ),
        (br#"{"name":"x"}"#, "neither CycloneDX"),
        (
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":{}}"#,
            "array of CycloneDX components",
        ),
        (
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"type":"library"}]}"#,
            "needs string \"type\" and \"name\"",
        ),
        (
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]} trailing"#,
            "not valid JSON",
        ),
    ];
    for (doc, expected) in cases {
        let err = parse_sbom(doc).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{}: {err}",
            String::from_utf8_lossy(doc)
        );
    }
}

#[test]
fn dpkg_status_paragraphs_become_debian_purls() {
    let status = "Package: libc6\n\
Status: install ok installed\n\
Architecture: amd64\n\
Source: glibc (2.36-9+deb12u4)\n\
Version: 2.36-9+deb12u4\n\
Description: GNU C Library: Shared libraries\n continuation line: not a field\n\
\n\
Package: zlib1g\n\
Status: install ok installed\n\
Architecture: amd64\n\
Source: zlib\n\
Version: 1:1.2.13.dfsg-1\n\
\n\
Package: removed-tool\n\
Status: deinstall ok config-files\n\
Architecture: amd64\n\
Version: 1.0\n\
\n\
Package: base-files\n\
Status: install ok installed\n\
Architecture: all\n\
Version: 12.4+deb12u5\n";
    let sbom = from_dpkg_status(status).unwrap();
    assert_eq!(sbom.format, SbomFormat::DpkgStatus);
    let purls: Vec<&str> = sbom
        .components
        .iter()
        .map(|c| c.purl.as_deref().unwrap())
        .collect();
    assert_eq!(
        purls,
        [
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&upstream=glibc",
            "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&upstream=zlib",
            "pkg:deb/debian/base-files@12.4%2Bdeb12u5?arch=all",
        ]
    );
    assert_eq!(sbom.components[1].version, "1:1.2.13.dfsg-1");
    let err = from_dpkg_status("Version: 1\n").unwrap_err().to_string();
    assert!(err.contains("no \"Package\" field"), "{err}");
    let err = from_dpkg_status("Package: a\nthis is no field\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn dpkg_status_of_this_machine_reads_every_installed_package_and_round_trips_as_cyclonedx() {
    let path = "/var/lib/dpkg/status";
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("this test reads a real Debian package database at {path}: {e}; run it on Debian or Ubuntu")
    });
    let sbom = from_dpkg_status(&text).unwrap();
    // Count the installed packages independently: paragraphs whose Status ends in "installed".
    let installed = text
        .split("\n\n")
        .filter(|p| {
            p.lines()
                .any(|l| l.starts_with("Status: ") && l.ends_with(" installed"))
        })
        .count();
    assert!(installed > 50, "a real system has more than 50 packages");
    assert_eq!(sbom.components.len() + sbom.duplicates, installed);
    // Debian package names are [a-z0-9+.-]: only '+' is percent-encoded in a purl.
    for c in &sbom.components {
        let prefix = format!("pkg:deb/debian/{}@", c.name.replace('+', "%2B"));
        assert!(
            c.purl.as_deref().is_some_and(|p| p.starts_with(&prefix)),
            "{c:?}"
        );
    }
    assert!(
        sbom.components.iter().any(|c| c.name == "dpkg"),
        "dpkg lists itself"
    );
    // Written as CycloneDX 1.6, it reads back as the same components.
    let written = to_cyclonedx_json(&sbom);
    let read_back = parse_sbom(&written).unwrap();
    assert_eq!(read_back.spec_version, "1.6");
    assert_eq!(read_back.components, sbom.components);
}
