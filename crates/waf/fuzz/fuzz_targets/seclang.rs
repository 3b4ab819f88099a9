//! Any text handed to the SecLang loader yields a rule set or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rampart_waf::RuleSet::from_text(&String::from_utf8_lossy(data));
});
