//! Cairn's Kafka-protocol client library. It grows with issue 8 (producer, consumer, admin);
//! for now it holds nothing but this page, so the workspace has the shape of design §1.

#![warn(missing_docs)]
