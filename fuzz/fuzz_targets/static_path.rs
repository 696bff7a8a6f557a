//! Fuzz target: see `switchboard_fuzz::StaticSite::check`.
#![no_main]

use std::sync::OnceLock;
use switchboard_fuzz::StaticSite;

static SITE: OnceLock<StaticSite> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| SITE.get_or_init(StaticSite::new).check(data));
