# CI check of nix/module.nix without nixpkgs (none can be fetched in CI):
#
#   nix-instantiate --eval --strict --json nix/check-module.nix
#
# The module is evaluated against a small stand-in for the parts of nixpkgs' `lib` and
# `pkgs` it uses. What this checks:
#   - the option tree: services.ghostcache.{enable, package, settings, credentialFile,
#     backup.{enable, directory, keep, onCalendar}} exist, with the documented defaults;
#   - the generated units: ghostcache.service always, ghostcache-backup.service and its
#     timer only with backup.enable, ExecStart lines, the timer's schedule;
#   - every hardening setting of systemd/ghostcache.service and
#     systemd/ghostcache-backup.service is also set on the NixOS unit of the same name;
#   - the assertions: a credential file in the Nix store and a backup directory outside
#     /var/lib are refused.
#   - nix/package.nix, with a stand-in rustPlatform: it refuses a rustc older than
#     Cargo.toml's rust-version, and adds CMake and Perl only when aws-lc-sys is locked.
# What it does not check: nixpkgs' own option types and merging (a wrong `type` would
# only show in a real NixOS evaluation), the systemd unit text NixOS renders, and the
# package build itself (it needs nixpkgs: `nix build`).
let
  stubLib = rec {
    mkOption = attrs: attrs // { _isOption = true; };
    mkEnableOption = name: {
      _isOption = true;
      default = false;
      description = "Whether to enable ${name}.";
    };
    mkIf = condition: content: { _if = true; inherit condition content; };
    mkDefault = x: x;
    literalExpression = text: { _literal = text; };
    optional = cond: x: if cond then [ x ] else [ ];
    optionalAttrs = cond: attrs: if cond then attrs else { };
    hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
    hasInfix = infix: s: builtins.match ".*${infix}.*" s != null;
    removePrefix = prefix: s:
      if hasPrefix prefix s
      then builtins.substring (builtins.stringLength prefix) (builtins.stringLength s) s
      else s;
    getExe = pkg: "${pkg}/bin/ghostcache";
    types = {
      package = "package";
      str = "str";
      nullOr = t: "nullOr ${t}";
      ints.positive = "positive int";
    };
  };
  stubPkgs = {
    formats.toml = { }: {
      type = "toml";
      generate = name: _value: "/nix/store/stub-${name}";
    };
    runCommand = name: _env: _script: "/nix/store/stub-${name}";
  };
  module = import ./module.nix;
  evalWith = cfg: module {
    lib = stubLib;
    pkgs = stubPkgs;
    config.services.ghostcache = cfg;
  };

  opts = (evalWith base).options.services.ghostcache;
  base = {
    enable = true;
    package = "/nix/store/stub-ghostcache";
    settings = { };
    credentialFile = null;
    backup = {
      enable = false;
      directory = opts.backup.directory.default;
      keep = opts.backup.keep.default;
      onCalendar = opts.backup.onCalendar.default;
    };
  };
  withBackup = base // { backup = base.backup // { enable = true; }; };

  cfgOf = c: (evalWith c).config.content;
  on = cfgOf withBackup;
  off = cfgOf base;
  services = on.systemd.services;
  backupService = services.ghostcache-backup.content;
  timer = on.systemd.timers.ghostcache-backup.content;

  # Keys of the [Service] section of a unit file, less those that say what to run and
  # where (they differ by design between the two forms).
  unitKeys = file:
    let
      lines = builtins.filter builtins.isString (builtins.split "\n" (builtins.readFile file));
      keyOf = l: let m = builtins.match "([A-Za-z]+)=.*" l; in if m == null then null else builtins.head m;
      keys = builtins.filter (k: k != null) (map keyOf lines);
      perUnit = [
        "Description" "Documentation" "After" "Wants" "WantedBy" "ExecStart" "ExecStartPre"
        "Environment" "Restart" "RestartSec" "TimeoutStartSec" "TimeoutStopSec" "NotifyAccess"
        "Type" "LoadCredentialEncrypted" "StandardOutput" "OnCalendar" "RandomizedDelaySec"
        "Persistent"
      ];
    in
    builtins.filter (k: !(builtins.elem k perUnit)) keys;
  missing = file: serviceConfig:
    builtins.filter (k: !(serviceConfig ? ${k})) (unitKeys file);

  # nix/package.nix with a given rustc version.
  packageWith = rustcVersion: import ./package.nix {
    lib = stubLib // {
      importTOML = path: builtins.fromTOML (builtins.readFile path);
      versionAtLeast = a: b: builtins.compareVersions a b >= 0;
      assertMsg = pred: msg: pred || throw msg;
      cleanSourceWith = args: args.src;
      optionals = cond: xs: if cond then xs else [ ];
      licenses.agpl3Plus = "AGPL-3.0-or-later";
      platforms.linux = [ "x86_64-linux" ];
    };
    rustPlatform.buildRustPackage = attrs: attrs;
    rustc.version = rustcVersion;
    cmake = "cmake";
    perl = "perl";
  };
  msrv = (builtins.fromTOML (builtins.readFile ../Cargo.toml)).package.rust-version;
  lockHasAwsLc = builtins.elem "aws-lc-sys"
    (map (p: p.name) (builtins.fromTOML (builtins.readFile ../Cargo.lock)).package);

  assertionsOf = c: map (a: a.assertion) (cfgOf c).assertions;
  checks = {
    option_defaults =
      opts.backup.enable.default == false
      && opts.backup.directory.default == "/var/lib/ghostcache-backups"
      && opts.backup.keep.default == 7
      && opts.backup.onCalendar.default == "daily";
    main_unit = services.ghostcache.serviceConfig.Type == "notify"
      && stubLib.hasPrefix "/nix/store/stub-ghostcache/bin/ghostcache serve --config" services.ghostcache.serviceConfig.ExecStart;
    backup_unit_only_when_enabled =
      services.ghostcache-backup.condition && !off.systemd.services.ghostcache-backup.condition
      && !off.systemd.timers.ghostcache-backup.condition;
    backup_exec = builtins.match ".* backup --config .* --into /var/lib/ghostcache-backups --keep 7" backupService.serviceConfig.ExecStart != null;
    backup_dirs = backupService.serviceConfig.StateDirectory == [ "ghostcache" "ghostcache-backups" ]
      && backupService.serviceConfig.User == "ghostcache";
    timer_schedule = timer.timerConfig.OnCalendar == "daily" && timer.timerConfig.Persistent;
    main_hardening_matches_unit = missing ../systemd/ghostcache.service services.ghostcache.serviceConfig == [ ];
    backup_hardening_matches_unit = missing ../systemd/ghostcache-backup.service backupService.serviceConfig == [ ];
    assertions_pass_by_default = builtins.all (x: x) (assertionsOf withBackup);
    store_credential_refused = !(builtins.all (x: x) (assertionsOf (withBackup // { credentialFile = "/nix/store/x-key"; })));
    backup_dir_outside_var_lib_refused = builtins.all
      (d: !(builtins.all (x: x) (assertionsOf (withBackup // { backup = withBackup.backup // { directory = d; }; }))))
      [ "/srv/backups" "/var/lib/ghostcache" "/var/lib/a/b" "/var/lib/" ];
    package_builds_with_rust_version = (packageWith msrv).pname == "ghostcache";
    package_refuses_older_rustc = !(builtins.tryEval (packageWith "1.80.0").pname).success;
    package_c_toolchain_only_for_aws_lc =
      (packageWith msrv).nativeBuildInputs == (if lockHasAwsLc then [ "cmake" "perl" ] else [ ]);
  };
  failed = builtins.filter (name: !checks.${name}) (builtins.attrNames checks);
in
if failed == [ ] then checks
else throw "nix/module.nix checks failed: ${builtins.concatStringsSep ", " failed}; missing hardening: main ${builtins.toJSON (missing ../systemd/ghostcache.service services.ghostcache.serviceConfig)}, backup ${builtins.toJSON (missing ../systemd/ghostcache-backup.service backupService.serviceConfig)}"
