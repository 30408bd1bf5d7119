//! Why a storage operation failed. Two different things can go wrong, and callers answer them
//! differently: the request does not fit what is stored ([`DomainError`]: an unknown device,
//! group or assignment, an invalid value, a conflict, a quota; the caller's to correct), or the
//! storage itself failed ([`StorageError`]: the URL, the database, a migration; nobody's
//! request was wrong). [`DbError`] is one or the other.

/// Why a storage operation failed (see the module documentation).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The request does not fit what is stored.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The request does not fit what is stored: the caller's to correct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("unknown device {0:?}")]
    UnknownDevice(String),
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    #[error("unknown assignment {0:?}")]
    UnknownAssignment(String),
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with stored state (e.g. a device in two active campaigns).
    #[error("{0}")]
    Conflict(String),
    /// A per-object limit is reached (e.g. feedback entries of one DDI action).
    #[error("{0}")]
    Quota(String),
}

/// The storage itself failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database URL {0:?} is not supported: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StorageError {
    /// The database cannot be reached right now (pool exhausted or closed, I/O, TLS): worth a
    /// retry later, unlike a query the database refused.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StorageError::Sql(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
            )
        )
    }
}

impl DbError {
    /// What the caller did wrong (`Ok`), or what failed in storage (`Err`).
    pub fn split(self) -> Result<DomainError, StorageError> {
        match self {
            DbError::Domain(e) => Ok(e),
            DbError::Storage(e) => Err(e),
        }
    }
}

// Queries and migrations fail as storage (`?` on sqlx results inside this crate).
impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        DbError::Storage(StorageError::Sql(e))
    }
}

impl From<sqlx::migrate::MigrateError> for DbError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        DbError::Storage(StorageError::Migrate(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_and_storage_errors_split_and_come_back_whole() {
        let domain = [
            DbError::from(DomainError::UnknownDevice("d".into())),
            DbError::from(DomainError::UnknownGroup("g".into())),
            DbError::from(DomainError::UnknownAssignment("a".into())),
            DbError::from(DomainError::Invalid("i".into())),
            DbError::from(DomainError::Conflict("c".into())),
            DbError::from(DomainError::Quota("q".into())),
        ];
        for e in domain {
            let text = e.to_string();
            let d = e.split().expect("a domain error");
            assert_eq!(d.to_string(), text);
            assert_eq!(DbError::from(d).to_string(), text);
        }
        for e in [
            DbError::from(StorageError::UnsupportedUrl("mysql://x".into())),
            DbError::from(sqlx::Error::PoolTimedOut),
            DbError::from(sqlx::Error::RowNotFound),
        ] {
            let text = e.to_string();
            let s = e.split().expect_err("a storage error");
            assert_eq!(s.to_string(), text);
            assert_eq!(DbError::from(s).to_string(), text);
        }
    }

    #[test]
    fn only_an_unreachable_database_is_unavailable() {
        assert!(StorageError::Sql(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(StorageError::Sql(sqlx::Error::PoolClosed).is_unavailable());
        assert!(!StorageError::Sql(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StorageError::UnsupportedUrl("x".into()).is_unavailable());
    }
}
