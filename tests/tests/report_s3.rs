//! The online report on moto's S3: the report contract's events written by the S3 event-log
//! writer (the store sink of `nectar dev --bucket`), then `build_report` and the report task
//! reading and writing the bucket.

use crate::common;

use nectar_platform::event_log::store_sink::StoreSink;
use nectar_platform::object_store::S3Store;
use nectar_platform::report::contract::report_contract;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_passes_the_report_contract() {
    let client = common::s3_client().await;
    let bucket = common::new_bucket(&client, "nectar-report").await;
    let store = S3Store::new(client, bucket);
    let sink = StoreSink::new(store.clone(), "dev-1");
    report_contract(&sink, &store).await;
}
