# The ghostcache binary, built from this repository with the locked dependencies.
{ lib, rustPlatform }:

rustPlatform.buildRustPackage {
  pname = "ghostcache";
  version = (lib.importTOML ../Cargo.toml).package.version;

  src = lib.cleanSourceWith {
    src = ../.;
    filter = path: type:
      let base = baseNameOf path; in
      !(type == "directory" && (base == "target" || base == ".git" || base == "ghostcache-data"));
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The test suite starts a private Tor network and headless Chromium; it runs outside
  # the sandbox with ./scripts/test.sh (or in `nix develop`).
  doCheck = false;

  meta = {
    description = "A private meeting place reached only through Tor Browser";
    license = lib.licenses.agpl3Plus;
    mainProgram = "ghostcache";
    platforms = lib.platforms.linux;
  };
}
