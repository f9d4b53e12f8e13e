# The ghostcache binary, built from this repository with the locked dependencies.
{ lib, rustPlatform, rustc, cmake, perl }:

let
  cargoToml = lib.importTOML ../Cargo.toml;
  rustVersion = cargoToml.package.rust-version;
  # aws-lc-rs (through aws-lc-sys) compiles AWS-LC, a C library: the C compiler of stdenv
  # does it, with CMake and Perl as its build script's fallbacks. Only when it is in the
  # lock file (it may land with the RSA work); nothing else here needs them.
  lockedNames = map (p: p.name) (lib.importTOML ../Cargo.lock).package;
  usesAwsLc = builtins.elem "aws-lc-sys" lockedNames || builtins.elem "aws-lc-fips-sys" lockedNames;
in
# Cargo would refuse an older toolchain anyway, but only after fetching every crate: say
# it at evaluation time, with both versions.
assert lib.assertMsg (lib.versionAtLeast rustc.version rustVersion)
  "ghostcache needs rustc ${rustVersion} or newer (Cargo.toml rust-version); this nixpkgs has ${rustc.version}. Pin a newer nixpkgs in flake.nix.";
rustPlatform.buildRustPackage {
  pname = "ghostcache";
  version = cargoToml.package.version;

  src = lib.cleanSourceWith {
    src = ../.;
    filter = path: type:
      let base = baseNameOf path; in
      !(type == "directory" && (base == "target" || base == ".git" || base == "ghostcache-data"));
  };

  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = lib.optionals usesAwsLc [ cmake perl ];
  # CMake is there for aws-lc-sys's build script, not to configure this package.
  dontUseCmakeConfigure = usesAwsLc;

  # The test suite starts a private Tor network and headless Chromium; it runs outside
  # the sandbox with ./scripts/test.sh (or in `nix develop`).
  doCheck = false;

  passthru = { inherit rustVersion; rustcVersion = rustc.version; };

  meta = {
    description = "A private meeting place reached only through Tor Browser";
    license = lib.licenses.agpl3Plus;
    mainProgram = "ghostcache";
    platforms = lib.platforms.linux;
  };
}
