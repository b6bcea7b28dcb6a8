//! The read side of the erasure log, as training and compaction use it: the erased subjects
//! of a site, loaded once at the start of a run.
//!
//! Every [`ErasureLog`] is a source (the local file of `nectar`, the DynamoDB table of the
//! Lambdas), so the adapter that records an erasure is the one training reads back; an
//! [`ErasureSet`] is a fixed source (nobody erased: `ErasureSet::default()`).

use std::future::Future;

use super::{ErasureLog, ErasureLogError, ErasureSet};

/// Where training and compaction find the erased subjects of a site.
pub trait ErasureSource: Send + Sync {
    /// The erased users and clients of `site` (empty when none was erased).
    fn erasure_set(
        &self,
        site: &str,
    ) -> impl Future<Output = Result<ErasureSet, ErasureLogError>> + Send;
}

impl<L: ErasureLog> ErasureSource for L {
    async fn erasure_set(&self, site: &str) -> Result<ErasureSet, ErasureLogError> {
        Ok(ErasureSet::new(&self.erasures(site).await?))
    }
}

/// A source where nobody is erased (tools that read their own synthetic data, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoErasures;

impl ErasureSource for NoErasures {
    async fn erasure_set(&self, _site: &str) -> Result<ErasureSet, ErasureLogError> {
        Ok(ErasureSet::default())
    }
}

impl ErasureSource for ErasureSet {
    /// The same set for every site.
    async fn erasure_set(&self, _site: &str) -> Result<ErasureSet, ErasureLogError> {
        Ok(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::{Erasure, LocalErasureLog, Subject};

    #[tokio::test]
    async fn the_local_log_is_read_back_as_the_site_erasure_set() {
        let dir = std::env::temp_dir().join(format!("nectar-esrc-{}", rand::random::<u64>()));
        let log = LocalErasureLog::new(&dir);
        // GIVEN nothing erased THEN an empty set
        assert!(log.erasure_set("demo").await.unwrap().is_empty());
        // GIVEN u1 erased on demo
        log.record("demo", &Subject::User("u1".into()), 5)
            .await
            .unwrap();
        // THEN demo's set erases u1, another site's does not
        let set = log.erasure_set("demo").await.unwrap();
        assert!(set.erases("u1") && !set.erases("u2"));
        assert_eq!(set.records(), 1);
        assert!(log.erasure_set("other").await.unwrap().is_empty());
        // AND a fixed set answers itself for any site
        let fixed = ErasureSet::new(&[Erasure {
            subject: "client:c1".into(),
            requested_ms: 1,
        }]);
        assert!(fixed.erasure_set("any").await.unwrap().erases("c1"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
