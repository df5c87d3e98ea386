//! eventd: an event notification server. See README.md and
//! docs/ARCHITECTURE.md. Modules, from the bottom up:
//! `domain` (pure types and rules) ← `store` (database) ← `auth`, `pull`,
//! `body`, `activity`, `webhook`, `metrics` (what faces and workers share)
//! ← `soapxml` (XML pieces the SOAP faces share) ← `state` (`AppState`) ←
//! faces `api` (JSON), `soap` (eventNotification), `paint` (PAINT
//! compatibility), `console` (the web console's static files, importing
//! nothing) and the `push` worker, which never import each other ←
//! `startup`, `cli`.
//! `pull_client` (`eventd pull`) is a client of the JSON API over HTTP that
//! uses `domain` only.

pub mod activity;
pub mod api;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod console;
pub mod domain;
pub mod ftp;
pub mod mail;
pub mod maintenance;
pub mod metrics;
pub mod paint;
pub mod pull;
pub mod pull_client;
pub mod push;
pub mod soap;
pub mod soapxml;
pub mod startup;
pub mod state;
pub mod store;
pub mod transport;
pub mod watermark;
pub mod webhook;
