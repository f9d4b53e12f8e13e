{
  description = "ghostcache: a private meeting place reached only through Tor Browser";

  # The NixOS release whose rustc builds ghostcache: Cargo.toml's rust-version (1.92, set
  # by arti 0.47's crates) must not exceed it. .ci/run checks that against a table of
  # releases, and nix/package.nix asserts it at evaluation time with the real rustc.
  # nixos-25.05 (rustc 1.86) and nixos-25.11 (rustc 1.91) are too old.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        ghostcache = pkgs.callPackage ./nix/package.nix { };
        default = ghostcache;
      });

      overlays.default = final: _prev: {
        ghostcache = final.callPackage ./nix/package.nix { };
      };

      # The module defaults `services.ghostcache.package` to this flake's build.
      nixosModules.default = { pkgs, lib, ... }: {
        imports = [ ./nix/module.nix ];
        services.ghostcache.package =
          lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      };

      # Everything the test suite needs: the toolchain, C tor for the private Tor
      # network, Chromium and its driver for the browser test, and Python's Fernet.
      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.cargo
            pkgs.rustc
            pkgs.clippy
            pkgs.rustfmt
            pkgs.cargo-nextest
            pkgs.tor
            pkgs.chromium
            pkgs.chromedriver
            (pkgs.python3.withPackages (ps: [ ps.cryptography ]))
          ];
        };
      });
    };
}
