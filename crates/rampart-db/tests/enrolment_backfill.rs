//! Migration 0007's backfill of how existing device rows were enrolled (decision 0021): rows the
//! DDI front created count as enrolled by a token (a TargetToken, or the gateway token unless the
//! tenant only accepted certificates), rows that existed before they joined a tenant as enrolled
//! by their certificate. Run on embedded SQLite and on PostgreSQL (RAMPART_TEST_POSTGRES_URL, set
//! by scripts/test.sh): the rows are made with today's code, reset to what a server before 0007
//! stored, and the migration's backfill statement is run on them again.

mod support;

use rampart_db::{AuditLine, Db, EnrolledBy, Enrolment, TenantSettings};

/// The backfill statement of migration 0007 (everything from its `UPDATE`).
fn backfill_sql() -> &'static str {
    let migration = include_str!("../migrations/0007_device_enrolment.sql");
    &migration[migration.find("UPDATE devices SET").expect("the backfill")..]
}

fn line(seq: u64) -> AuditLine {
    AuditLine {
        seq,
        line: format!("{{\"seq\":{seq}}}"),
    }
}

fn settings(target_token: bool, gateway_token: bool, mtls: bool) -> TenantSettings {
    TenantSettings {
        target_token,
        gateway_token,
        mtls,
        gateway_token_hash: None,
    }
}

#[test]
fn existing_rows_are_backfilled_on_the_safe_side() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for url in support::fresh_urls(dir.path(), "eb", "backfill").await {
            let db = Db::connect(&url).await.unwrap();
            db.create_ddi_tenant("TOKENS", &settings(true, false, false), 1, &line(0))
                .await
                .unwrap();
            db.create_ddi_tenant("GATEWAY", &settings(true, true, false), 1, &line(1))
                .await
                .unwrap();
            db.create_ddi_tenant("CERTS", &settings(false, false, true), 1, &line(2))
                .await
                .unwrap();
            // Enrolled natively at 100, joined to a tenant later (its certificate on DDI).
            db.register_if_new("native", 100).await.unwrap();
            db.join_ddi_tenant("native", "CERTS", EnrolledBy::Certificate, 200, &line(3))
                .await
                .unwrap();
            db.register_if_new("native-only", 100).await.unwrap();
            db.set_ddi_target_token("tok", "TOKENS", "digest", None, false, 300, &line(4))
                .await
                .unwrap();
            db.join_ddi_tenant("gw", "GATEWAY", EnrolledBy::GatewayToken, 300, &line(5))
                .await
                .unwrap();
            db.join_ddi_tenant("crt", "CERTS", EnrolledBy::Certificate, 300, &line(6))
                .await
                .unwrap();

            // What a server before migration 0007 stored, then the backfill.
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            sqlx::query("UPDATE devices SET enrolled_by = 'certificate', enrolled_tenant = ''")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(backfill_sql()))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;

            let enrolment = async |id: &str| db.device_enrolment(id).await.unwrap().unwrap();
            let expect = |by, tenant: &str| Enrolment {
                by,
                tenant: tenant.to_owned(),
            };
            assert_eq!(
                enrolment("native").await,
                expect(EnrolledBy::Certificate, ""),
                "{url}"
            );
            assert_eq!(
                enrolment("native-only").await,
                expect(EnrolledBy::Certificate, "")
            );
            assert_eq!(
                enrolment("tok").await,
                expect(EnrolledBy::TargetToken, "TOKENS")
            );
            assert_eq!(
                enrolment("gw").await,
                expect(EnrolledBy::GatewayToken, "GATEWAY")
            );
            assert_eq!(
                enrolment("crt").await,
                expect(EnrolledBy::Certificate, "CERTS")
            );
            db.close().await;
        }
    });
}
