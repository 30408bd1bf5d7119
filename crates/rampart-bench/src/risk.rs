//! `rampart-bench risk`: issue 17's matching figures on the pure core (`rampart_vuln`), with
//! real advisories. A fleet of `--devices` devices runs `--releases` releases of
//! `--components` components each (PyPI packages: the feed's own package names at versions it
//! lists as affected for some, at versions past every advisory for others, and packages no
//! advisory names for the rest). It measures:
//!
//! * **full re-match**: every advisory of the feed against every release's components, and
//!   the affected devices per advisory (each device counted through the release it runs);
//! * **one new advisory**: parsing it, indexing it, matching it against the components that
//!   carry its package (found through a name index, as a database index would) and counting
//!   the affected devices;
//! * **memory**: the process's resident set after building the fleet's components and the
//!   index, and its peak.
//!
//! The server's storage and API (the posture by region and hardware) are not part of these
//! figures: they measure the core the server calls.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use rampart_vuln::component::{Component, Ecosystem};
use rampart_vuln::matching::AdvisoryIndex;
use rampart_vuln::osv::{Advisory, parse_advisory};

use crate::report::{machine, stats};

/// Largest advisory file read (the core refuses larger ones anyway).
const MAX_ADVISORY_FILE: u64 = 1 << 20;

/// `rampart-bench risk` options.
#[derive(clap::Args)]
pub struct RiskArgs {
    /// Devices in the fleet.
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// Releases the fleet runs (devices are spread evenly over them).
    #[arg(long, default_value_t = 20)]
    releases: usize,
    /// Components per release.
    #[arg(long, default_value_t = 2_000)]
    components: usize,
    /// A directory of OSV advisories (default: the shared PyPI feed).
    #[arg(long, default_value = "../shared/vectors/osv-pypi")]
    advisories: PathBuf,
    /// Measurement rounds of each figure.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Through a real `rampart server` (SQLite, or PostgreSQL with --postgres-url) instead of
    /// the core alone: the releases are published with their SBOMs, the devices seeded into its
    /// database, the feed imported through the API, and the figures are the API's answers.
    #[arg(long)]
    server: bool,
    /// Directory to build in with --server (new or empty; default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// With --server: a PostgreSQL server URL whose user may create databases; the server
    /// then runs on a new database there (dropped at the end) instead of SQLite.
    #[arg(long, requires = "server")]
    postgres_url: Option<String>,
}

/// A small deterministic generator: the same fleet every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn read_feed(dir: &PathBuf) -> anyhow::Result<Vec<Advisory>> {
    let mut advisories = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "reading the advisories in {} (give --advisories DIR)",
            dir.display()
        )
    })?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        if std::fs::metadata(&path)?.len() > MAX_ADVISORY_FILE {
            bail!("{} is larger than 1 MiB", path.display());
        }
        let bytes = std::fs::read(&path)?;
        advisories.push(parse_advisory(&bytes).with_context(|| path.display().to_string())?);
    }
    if advisories.is_empty() {
        bail!("no *.json advisories in {}", dir.display());
    }
    Ok(advisories)
}

/// The feed's PyPI packages with the versions it lists as affected.
fn affected_versions(feed: &[Advisory]) -> Vec<(String, Vec<String>)> {
    let mut by_name: HashMap<String, BTreeSet<String>> = HashMap::new();
    for advisory in feed.iter().filter(|a| !a.is_withdrawn()) {
        for affected in &advisory.affected {
            let Some(package) = &affected.package else {
                continue;
            };
            if package.ecosystem != Ecosystem::PyPI {
                continue;
            }
            by_name
                .entry(package.name.clone())
                .or_default()
                .extend(affected.versions.iter().cloned());
        }
    }
    let mut out: Vec<(String, Vec<String>)> = by_name
        .into_iter()
        .map(|(name, versions)| (name, versions.into_iter().collect()))
        .collect();
    out.sort();
    out
}

fn pypi(name: &str, version: &str) -> Component {
    Component {
        name: name.to_owned(),
        version: version.to_owned(),
        purl: Some(format!("pkg:pypi/{}@{version}", name.to_ascii_lowercase())),
        ..Component::default()
    }
}

/// Each release's components: a third of them packages the feed names (half of those at an
/// affected version), the rest packages it does not.
fn fleet_components(
    feed_packages: &[(String, Vec<String>)],
    releases: usize,
    per_release: usize,
) -> Vec<Vec<Component>> {
    let mut rng = Lcg(17);
    (0..releases)
        .map(|r| {
            (0..per_release)
                .map(|i| {
                    if i % 3 == 0 && !feed_packages.is_empty() {
                        let (name, versions) = &feed_packages[rng.below(feed_packages.len())];
                        if rng.below(2) == 0 && !versions.is_empty() {
                            pypi(name, &versions[rng.below(versions.len())])
                        } else {
                            pypi(name, "9999.0.0")
                        }
                    } else {
                        pypi(&format!("firmware-part-{i}"), &format!("1.{r}.0"))
                    }
                })
                .collect()
        })
        .collect()
}

/// The process's resident set and its peak, MiB (Linux).
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Of the feed's packages, the one the most components of the fleet's releases are: the new
/// advisory names it, so it reaches many devices.
fn most_carried(feed_packages: &[(String, Vec<String>)], releases: &[Vec<Component>]) -> String {
    let mut carried: HashMap<String, usize> = HashMap::new();
    for c in releases.iter().flatten() {
        *carried
            .entry(Ecosystem::PyPI.normalize_package_name(&c.name))
            .or_default() += 1;
    }
    feed_packages
        .iter()
        .max_by_key(|(name, _)| {
            carried
                .get(&Ecosystem::PyPI.normalize_package_name(name))
                .copied()
                .unwrap_or(0)
        })
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| "firmware-part-1".into())
}

/// A new advisory for `package` affecting every version below `fixed` (an OSV record as a
/// feed would publish it).
fn new_advisory(package: &str, fixed: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schema_version": "1.6.0",
        "id": "RAMPART-BENCH-2026-1",
        "modified": "2026-12-06T00:00:00Z",
        "published": "2026-12-06T00:00:00Z",
        "aliases": ["CVE-2026-99999"],
        "summary": "a new advisory for the benchmark",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{
            "package": {"ecosystem": "PyPI", "name": package},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]
        }]
    }))
    .unwrap_or_default()
}

pub fn run(a: RiskArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.devices > 0 && a.releases > 0 && a.components > 0 && a.rounds > 0,
        "--devices, --releases, --components and --rounds must be at least 1"
    );
    if a.server {
        return run_server(a);
    }
    println!(
        "rampart-bench risk: {} devices over {} releases of {} components; advisories from {}; {}",
        a.devices,
        a.releases,
        a.components,
        a.advisories.display(),
        machine()
    );
    let started = Instant::now();
    let feed = read_feed(&a.advisories)?;
    let parse_secs = started.elapsed().as_secs_f64();
    let feed_packages = affected_versions(&feed);
    let releases = fleet_components(&feed_packages, a.releases, a.components);
    // Devices per release (device d runs release d mod releases): what the inventory says.
    let devices_of: Vec<usize> = (0..a.releases)
        .map(|r| a.devices / a.releases + usize::from(r < a.devices % a.releases))
        .collect();
    let started = Instant::now();
    let index = AdvisoryIndex::build(feed.iter().cloned());
    let index_secs = started.elapsed().as_secs_f64();
    println!(
        "  feed: {} advisories parsed in {:.2} s ({} withdrawn), indexed in {:.3} s; {} PyPI packages named",
        feed.len(),
        parse_secs,
        index.withdrawn_skipped(),
        index_secs,
        feed_packages.len()
    );

    // Full re-match: every advisory against every release; affected devices per advisory.
    let mut full = Vec::new();
    let mut affected_devices_total = 0usize;
    let mut advisories_hit = 0usize;
    for _ in 0..a.rounds {
        let started = Instant::now();
        let mut devices_per_advisory: HashMap<String, usize> = HashMap::new();
        for (r, components) in releases.iter().enumerate() {
            let report = index.match_components(components);
            let hit: BTreeSet<&str> = report.matches.iter().map(|m| m.advisory.as_str()).collect();
            for advisory in hit {
                *devices_per_advisory.entry(advisory.to_owned()).or_default() += devices_of[r];
            }
        }
        full.push(started.elapsed().as_secs_f64());
        advisories_hit = devices_per_advisory.len();
        affected_devices_total = devices_per_advisory.values().sum();
    }
    let s = stats(&full);
    println!(
        "  full re-match: median {:.3} s (p10 {:.3}, p90 {:.3}, min {:.3}, max {:.3}) over {} rounds; {} advisories affect the fleet, {} (advisory, device) pairs",
        s.median, s.p10, s.p90, s.min, s.max, a.rounds, advisories_hit, affected_devices_total
    );

    // One new advisory: the components carrying its package come from a name index (what the
    // server's database index on component names gives).
    let mut by_name: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    for (r, components) in releases.iter().enumerate() {
        for (i, c) in components.iter().enumerate() {
            by_name
                .entry(Ecosystem::PyPI.normalize_package_name(&c.name))
                .or_default()
                .push((r, i));
        }
    }
    let target = most_carried(&feed_packages, &releases);
    let record = new_advisory(&target, "10000");
    let mut one = Vec::new();
    let mut affected = 0usize;
    for _ in 0..a.rounds {
        let started = Instant::now();
        let advisory = parse_advisory(&record)?;
        let single = AdvisoryIndex::build([advisory]);
        let carriers = by_name
            .get(&Ecosystem::PyPI.normalize_package_name(&target))
            .cloned()
            .unwrap_or_default();
        let mut hit_releases = BTreeSet::new();
        for (r, i) in carriers {
            let report = single.match_components(std::slice::from_ref(&releases[r][i]));
            if !report.matches.is_empty() {
                hit_releases.insert(r);
            }
        }
        affected = hit_releases.iter().map(|r| devices_of[*r]).sum();
        one.push(started.elapsed().as_secs_f64());
    }
    let s1 = stats(&one);
    println!(
        "  one new advisory ({target}): affected devices known in median {:.6} s (p10 {:.6}, p90 {:.6}, max {:.6}); {affected} devices affected",
        s1.median, s1.p10, s1.p90, s1.max
    );
    let (rss, peak) = memory_mib();
    println!("  memory: resident {rss:.0} MiB, peak {peak:.0} MiB");
    println!(
        "  goals: one new advisory -> affected devices known within 5 s: {}; full re-match within 60 s: {}",
        if s1.max <= 5.0 { "met" } else { "NOT met" },
        if s.max <= 60.0 { "met" } else { "NOT met" }
    );
    Ok(())
}

/// A CycloneDX 1.6 SBOM of `components`.
fn cyclonedx(components: &[Component]) -> Vec<u8> {
    let list: Vec<serde_json::Value> = components
        .iter()
        .map(|c| {
            serde_json::json!({"type": "library", "bom-ref": c.purl, "name": c.name,
                               "version": c.version, "purl": c.purl})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": list
    }))
    .unwrap_or_default()
}

/// The figures through a real server: see [`RiskArgs::server`].
fn run_server(a: RiskArgs) -> anyhow::Result<()> {
    use crate::server::on_own_database;
    use rampart_cli::commands::demo::setup::{PASSPHRASE, prepare_dir};

    println!(
        "rampart-bench risk --server: {} devices over {} releases of {} components; advisories from {}; {}",
        a.devices,
        a.releases,
        a.components,
        a.advisories.display(),
        machine()
    );
    let feed = read_feed(&a.advisories)?;
    let feed_packages = affected_versions(&feed);
    let releases = fleet_components(&feed_packages, a.releases, a.components);
    let dir = prepare_dir(a.dir.clone())?;
    let (repo_dir, _tlog, _) = crate::campaign::demo_repository(&dir)?;

    // The releases, each with its SBOM, for one hardware id.
    let started = Instant::now();
    let open = |r: &str| -> Result<Box<dyn rampart_keys::Signer>, rampart_keys::SignError> {
        Ok(Box::new(rampart_keys::file::FileSigner::open(
            std::path::Path::new(r),
            PASSPHRASE,
        )?))
    };
    let images = dir.join("risk-images");
    std::fs::create_dir_all(&images)?;
    let mut requests = Vec::new();
    for (r, components) in releases.iter().enumerate() {
        let image = images.join(format!("risk-{r}.bin"));
        std::fs::write(&image, format!("risk benchmark release {r}").repeat(64))?;
        let sbom = images.join(format!("risk-{r}.cdx.json"));
        std::fs::write(&sbom, cyclonedx(components))?;
        requests.push(rampart_repo::ReleaseRequest {
            image,
            target_name: Some(format!("risk-{r}.bin")),
            hardware_ids: vec!["risk-board".into()],
            version: format!("{r}.0.0-risk"),
            security_version: 1,
            sbom: Some(sbom),
            provenance: None,
            role: None,
        });
    }
    let now = rampart_cli::shared::now_unix();
    let repo = rampart_repo::Repository::open(&repo_dir)?;
    repo.add_releases(&requests, &open, now, &rampart_repo::NoProgress)?;
    repo.publish(&open, now)?;
    println!(
        "  published {} releases with SBOMs in {:.1} s",
        a.releases,
        started.elapsed().as_secs_f64()
    );

    // The database: a new SQLite file, or a new database on the PostgreSQL server given.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let backend = if a.postgres_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("  database: {backend}");
    on_own_database(
        &rt,
        a.postgres_url.as_deref(),
        "rampart_bench_risk",
        |db_url| measure_server(&a, &rt, &dir, &repo_dir, db_url, &feed_packages, &releases),
    )
}

/// The server figures, on the server's database `db_url` (`None`: SQLite).
#[allow(clippy::too_many_arguments)]
fn measure_server(
    a: &RiskArgs,
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    repo_dir: &std::path::Path,
    db_url: Option<&str>,
    feed_packages: &[(String, Vec<String>)],
    releases: &[Vec<Component>],
) -> anyhow::Result<()> {
    use rampart_cli::commands::demo::fleet::operator;
    use rampart_cli::commands::demo::server::start_server_on;
    use rampart_cli::commands::demo::setup::PASSPHRASE;
    let server = start_server_on(&dir.join("server"), repo_dir, PASSPHRASE, &[], db_url)?;
    let now = rampart_cli::shared::now_unix();
    let (_, api) = operator(&server, "risk-bench")?;

    // The fleet, seeded straight into the server's database (as the server benchmark does).
    let started = Instant::now();
    rt.block_on(async {
        let db = rampart_db::Db::connect(&server.db).await?;
        let regions = ["eu-west", "us-east", "ap-south", "sa-east"];
        let mut start = 0;
        while start < a.devices {
            let end = (start + 5_000).min(a.devices);
            let chunk: Vec<(String, rampart_db::DeviceFacts)> = (start..end)
                .map(|d| {
                    (
                        format!("risk-dev-{d:06}"),
                        rampart_db::DeviceFacts {
                            hardware_id: "risk-board".into(),
                            firmware_version: format!("{}.0.0-risk", d % a.releases),
                            security_version: 1,
                            region: regions[d % regions.len()].into(),
                            tags: vec![format!("line-{}", d % 10)],
                            ..Default::default()
                        },
                    )
                })
                .collect();
            db.insert_devices(&chunk, now).await?;
            start = end;
        }
        db.close().await;
        Ok::<_, anyhow::Error>(())
    })?;
    println!(
        "  seeded {} devices in {:.1} s",
        a.devices,
        started.elapsed().as_secs_f64()
    );

    // The feed through the API, in batches within the route's limits.
    let started = Instant::now();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&a.advisories)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    files.sort();
    for batch in files.chunks(400) {
        let records: Vec<serde_json::Value> = batch
            .iter()
            .map(|p| -> anyhow::Result<serde_json::Value> {
                Ok(serde_json::from_slice(&std::fs::read(p)?)?)
            })
            .collect::<anyhow::Result<_>>()?;
        api.ok(
            "POST",
            "/api/v1/risk/advisories",
            Some(serde_json::json!({ "advisories": records })),
        )?;
    }
    println!(
        "  imported {} advisories through the API in {:.1} s",
        files.len(),
        started.elapsed().as_secs_f64()
    );

    // Posture by region: the first answer parses the feed and every SBOM; later ones reuse them.
    let started = Instant::now();
    let first = api.ok("GET", "/api/v1/risk/posture?by=region", None)?;
    let cold = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        first["devices"].as_u64() == Some(a.devices as u64),
        "the posture assessed {} devices, not {}: {first}",
        first["devices"],
        a.devices
    );
    let mut warm = Vec::new();
    for _ in 0..a.rounds {
        let started = Instant::now();
        api.ok("GET", "/api/v1/risk/posture?by=region", None)?;
        warm.push(started.elapsed().as_secs_f64());
    }
    let w = stats(&warm);
    println!(
        "  posture by region: first {cold:.2} s (feed and SBOMs parsed, components stored); then median {:.2} s (p10 {:.2}, p90 {:.2}, max {:.2}) over {} rounds",
        w.median, w.p10, w.p90, w.max, a.rounds
    );

    // One new advisory: imported, then its affected devices asked for (the feed changed, so
    // the server re-indexes it: the honest path).
    let target = most_carried(feed_packages, releases);
    let mut one = Vec::new();
    let mut affected = 0;
    for round in 0..a.rounds {
        let mut record: serde_json::Value =
            serde_json::from_slice(&new_advisory(&target, "10000"))?;
        record["id"] = format!("RAMPART-BENCH-2026-{round}").into();
        let started = Instant::now();
        api.ok(
            "POST",
            "/api/v1/risk/advisories",
            Some(serde_json::json!({ "advisories": [record] })),
        )?;
        let answer = api.ok(
            "GET",
            &format!("/api/v1/risk/advisories/RAMPART-BENCH-2026-{round}?limit=1"),
            None,
        )?;
        one.push(started.elapsed().as_secs_f64());
        affected = answer["advisories"][0]["affected_count"]
            .as_u64()
            .with_context(|| format!("no affected_count in {answer}"))?;
    }
    let o = stats(&one);
    println!(
        "  one new advisory ({target}) -> affected devices known: median {:.2} s (p10 {:.2}, p90 {:.2}, max {:.2}); {affected} devices affected",
        o.median, o.p10, o.p90, o.max
    );
    let rss = crate::server::process::peak_rss_kib(server.process.child.id())
        .map(|kib| kib as f64 / 1024.0)
        .unwrap_or(0.0);
    println!("  server memory: peak resident {rss:.0} MiB");
    println!(
        "  goals: one new advisory -> affected devices known within 5 s: {}; full re-match within 60 s: {}",
        if o.max <= 5.0 { "met" } else { "NOT met" },
        if cold <= 60.0 { "met" } else { "NOT met" }
    );
    Ok(())
}
