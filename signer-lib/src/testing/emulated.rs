//! The fixture for [`EmulatedToken`]: fresh tokens in a temporary directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::emulator::card::default_management_key_algorithm;
use crate::emulator::{EmulatedToken, InitOptions, OpenOptions};
use crate::error::{Error, Result};
use crate::secret::ManagementKey;
use crate::testing::fixture::{TokenFixture, TouchSetup};

/// Hands out emulated tokens, each in its own state file under a temporary
/// directory that is removed when the fixture is dropped.
#[derive(Debug)]
pub struct EmulatedFixture {
    dir: tempfile::TempDir,
    options: InitOptions,
    next: u32,
    touch: HashMap<PathBuf, TouchSetup>,
}

impl EmulatedFixture {
    /// Tokens with the default options (firmware 5.7.4, AES-192 management key).
    pub fn new() -> EmulatedFixture {
        EmulatedFixture::with_options(InitOptions::default())
    }

    /// Tokens made with `options`.
    pub fn with_options(options: InitOptions) -> EmulatedFixture {
        let dir = tempfile::Builder::new()
            .prefix("signer-token-suite-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        EmulatedFixture {
            dir,
            options,
            next: 0,
            touch: HashMap::new(),
        }
    }

    /// The temporary directory holding the state files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh state file path in the directory (not created).
    pub fn new_path(&mut self) -> PathBuf {
        self.next += 1;
        self.dir.path().join(format!("token-{}.state", self.next))
    }
}

impl Default for EmulatedFixture {
    fn default() -> Self {
        EmulatedFixture::new()
    }
}

impl TokenFixture for EmulatedFixture {
    type Token = EmulatedToken;

    fn fresh(&mut self, touch: TouchSetup) -> Result<EmulatedToken> {
        let path = self.new_path();
        let token = EmulatedToken::init_with(
            &path,
            &self.options,
            OpenOptions {
                touch: touch.source.clone(),
                timing: touch.timing,
            },
        )?;
        self.touch.insert(path, touch);
        Ok(token)
    }

    fn reopen(&mut self, token: EmulatedToken) -> Result<EmulatedToken> {
        let path = token.path().to_path_buf();
        drop(token);
        let touch = self
            .touch
            .get(&path)
            .cloned()
            .unwrap_or_else(TouchSetup::approve);
        EmulatedToken::open_with(
            &path,
            OpenOptions {
                touch: touch.source,
                timing: touch.timing,
            },
        )
    }

    fn attestation_roots(&mut self, token: &mut EmulatedToken) -> Result<Vec<Vec<u8>>> {
        Ok(vec![token.attestation_root_der()?])
    }

    fn factory_management_key(&self) -> ManagementKey {
        let algorithm = self
            .options
            .management_key_algorithm
            .unwrap_or_else(|| default_management_key_algorithm(self.options.firmware));
        ManagementKey::default_for(algorithm)
            .map_err(|e: Error| e)
            .unwrap_or_else(|e| panic!("default management key: {e}"))
    }
}
