//! eventd: an event notification server. See README.md and
//! docs/ARCHITECTURE.md. Modules, from the bottom up:
//! `domain` (pure types and rules) ← `store` (database) ← `auth`, `pull`,
//! `body` (what every face shares) ← `soapxml` (XML pieces the SOAP faces
//! share) ← faces `api` (JSON), `soap` (eventNotification), `paint` (PAINT
//! compatibility), which never import each other ← `startup`, `cli`.

pub mod api;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod domain;
pub mod maintenance;
pub mod metrics;
pub mod paint;
pub mod pull;
pub mod push;
pub mod soap;
pub mod soapxml;
pub mod startup;
pub mod store;
pub mod webhook;
