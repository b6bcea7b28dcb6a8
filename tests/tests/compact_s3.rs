//! Compaction on moto's S3: the shared compaction contract (conservation of distinct event ids,
//! exactly-once parts, late events recompacted, reads equal to the raw read) on a fresh bucket.

mod common;

use nectar_platform::event_log::compact::contract::compaction_contract;
use nectar_platform::object_store::S3Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_compaction_passes_the_contract() {
    let client = common::s3_client().await;
    let bucket = common::new_bucket(&client, "nectar-compact").await;
    compaction_contract(&S3Store::new(client, bucket)).await;
}
