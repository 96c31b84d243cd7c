//! The end-to-end tests of lifewatch, in one test binary: the `lifewatch`
//! binary run as a child process on fixtures, real SQLite files in temporary
//! directories and a real `nats-server` on a free loopback port (see
//! `nats_support`). Nothing is mocked.

mod common;
mod nats_support;

mod backtest;
mod browser;
mod cli;
mod comms;
mod conformance;
mod demo;
mod docs;
mod nats_auth;
mod nats_live;
mod notify;
mod oncall;
mod operator;
mod ops;
mod properties;
mod readiness;
mod replay_cli;
mod schemas;
mod setup;
mod snapshots;
mod store;
mod store_query;
mod store_writer;
mod verify;
mod web;
mod web_live;
