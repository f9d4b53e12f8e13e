# NixOS module: services.ghostcache.
#
#   services.ghostcache = {
#     enable = true;
#     credentialFile = "/var/lib/secrets/ghostcache-master-key";   # not in the Nix store
#     settings.accounts.inactivity_days = 14;
#   };
{ config, lib, pkgs, ... }:

let
  cfg = config.services.ghostcache;
  backupStateDir = lib.removePrefix "/var/lib/" cfg.backup.directory;
  settingsFormat = pkgs.formats.toml { };
  rawConfig = settingsFormat.generate "ghostcache.toml" cfg.settings;
  # Validated at build time: a typo in `settings` fails `nixos-rebuild`, not the service.
  configFile = pkgs.runCommand "ghostcache-checked.toml" { } ''
    ${lib.getExe cfg.package} check-config --config ${rawConfig} > /dev/null
    cp ${rawConfig} $out
  '';

  # The hardening both units share (the same set as systemd/ghostcache.service).
  hardening = {
    DynamicUser = true;
    UMask = "0077";
    LimitCORE = 0;
    NoNewPrivileges = true;
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    DevicePolicy = "closed";
    PrivateUsers = true;
    PrivateIPC = true;
    PrivateMounts = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible";
    ProcSubset = "pid";
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    RemoveIPC = true;
    KeyringMode = "private";
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service"
      "~@privileged @resources @mount @clock @debug @module @obsolete @raw-io @reboot @swap @cpu-emulation"
    ];
    SystemCallErrorNumber = "EPERM";
    NoExecPaths = [ "/" ];
    ExecPaths = [ "/nix/store" ];
  };
in
{
  options.services.ghostcache = {
    enable = lib.mkEnableOption "ghostcache, a private meeting place published as a Tor onion service";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The ghostcache package to run.";
    };

    settings = lib.mkOption {
      type = settingsFormat.type;
      default = { };
      example = lib.literalExpression ''
        {
          accounts.inactivity_days = 14;
          server.listen = "127.0.0.1:8080";
        }
      '';
      description = ''
        Configuration written to ghostcache's TOML file; every key is documented in the
        README. Unknown keys are errors, caught at build time by `ghostcache check-config`.
      '';
    };

    credentialFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "/var/lib/secrets/ghostcache-master-key";
      description = ''
        File holding the master key (at least 32 random bytes) that seals the onion
        identity key in the database. Passed to the service with systemd's LoadCredential,
        so the service never reads it from its original place. Must not be in the Nix store,
        which is world-readable. Create it with
        `install -m 0400 /dev/null KEY && head -c 32 /dev/urandom > KEY`.
      '';
    };

    backup = {
      enable = lib.mkEnableOption "a scheduled backup of the database (`ghostcache backup --into`)";

      directory = lib.mkOption {
        type = lib.types.str;
        default = "/var/lib/ghostcache-backups";
        description = ''
          Where backups are written, as ghostcache-YYYY-MM-DDTHHMMSSZ.redb (mode 0600).
          Must lie directly under /var/lib/: it becomes the backup service's private
          StateDirectory (reached as /var/lib/private/<name> from the host).
        '';
      };

      keep = lib.mkOption {
        type = lib.types.ints.positive;
        default = 7;
        description = "How many backups to keep; older ones are deleted after each backup.";
      };

      onCalendar = lib.mkOption {
        type = lib.types.str;
        default = "daily";
        example = "*-*-* 03:30:00";
        description = "When to back up, as a systemd calendar event (systemd.time(7)).";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.credentialFile == null || !(lib.hasPrefix builtins.storeDir (toString cfg.credentialFile));
        message = "services.ghostcache.credentialFile must not be in the Nix store: the store is world-readable.";
      }
      {
        assertion = !cfg.backup.enable
          || (lib.hasPrefix "/var/lib/" cfg.backup.directory
            && backupStateDir != ""
            && !(lib.hasInfix "/" backupStateDir)
            && backupStateDir != "ghostcache");
        message = "services.ghostcache.backup.directory must be a directory directly under /var/lib/ (not the service's own): it becomes the backup service's StateDirectory.";
      }
    ];

    systemd.services.ghostcache = {
      description = "ghostcache onion service";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      environment = {
        TZ = "UTC";
      } // lib.optionalAttrs (cfg.credentialFile != null) {
        GHOSTCACHE_TOR__MASTER_KEY_CREDENTIAL = "master-key";
      };
      serviceConfig = hardening // {
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = "${lib.getExe cfg.package} serve --config ${configFile}";
        Restart = "on-failure";
        RestartSec = "5s";
        TimeoutStartSec = "10min";
        TimeoutStopSec = "30s";

        StateDirectory = "ghostcache";
        StateDirectoryMode = "0700";
        # The onion address is printed on stdout for an operator at a terminal; keep it out
        # of the journal (`ghostcache onion-address` prints it).
        StandardOutput = "null";
        LoadCredential = lib.optional (cfg.credentialFile != null) "master-key:${cfg.credentialFile}";

        LimitNOFILE = 8192;
        MemoryMax = "2G";
        TasksMax = 256;
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
      };
    };

    # Daily (by default) backups while the service runs, the oldest beyond `keep` removed.
    systemd.services.ghostcache-backup = lib.mkIf cfg.backup.enable {
      description = "ghostcache backup";
      environment.TZ = "UTC";
      serviceConfig = hardening // {
        Type = "oneshot";
        ExecStart = "${lib.getExe cfg.package} backup --config ${configFile} --into ${cfg.backup.directory} --keep ${toString cfg.backup.keep}";
        TimeoutStartSec = "1h";
        Nice = 10;
        IOSchedulingClass = "idle";
        # The same dynamic user as ghostcache.service, so the database (0600) is readable.
        User = "ghostcache";
        StateDirectory = [ "ghostcache" backupStateDir ];
        StateDirectoryMode = "0700";
        LimitNOFILE = 1024;
        MemoryMax = "1G";
        TasksMax = 16;
        PrivateNetwork = true;
        RestrictAddressFamilies = [ "AF_UNIX" ];
      };
    };

    systemd.timers.ghostcache-backup = lib.mkIf cfg.backup.enable {
      description = "Scheduled ghostcache backup";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = cfg.backup.onCalendar;
        RandomizedDelaySec = "1h";
        Persistent = true;
      };
    };
  };
}
