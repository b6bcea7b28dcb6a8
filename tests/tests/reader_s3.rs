//! The event-log reader on moto's S3: the shared reader contract on a fresh bucket.

use crate::common;

use nectar_platform::event_log::reader::contract::reader_contract;
use nectar_platform::object_store::S3Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_reader_passes_the_contract() {
    let client = common::s3_client().await;
    let bucket = common::new_bucket(&client, "nectar-reader").await;
    reader_contract(&S3Store::new(client, bucket)).await;
}
