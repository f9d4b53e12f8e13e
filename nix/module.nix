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
  settingsFormat = pkgs.formats.toml { };
  rawConfig = settingsFormat.generate "ghostcache.toml" cfg.settings;
  # Validated at build time: a typo in `settings` fails `nixos-rebuild`, not the service.
  configFile = pkgs.runCommand "ghostcache-checked.toml" { } ''
    ${lib.getExe cfg.package} check-config --config ${rawConfig} > /dev/null
    cp ${rawConfig} $out
  '';
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
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.credentialFile == null || !(lib.hasPrefix builtins.storeDir (toString cfg.credentialFile));
        message = "services.ghostcache.credentialFile must not be in the Nix store: the store is world-readable.";
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
      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = "${lib.getExe cfg.package} serve --config ${configFile}";
        Restart = "on-failure";
        RestartSec = "5s";
        TimeoutStartSec = "10min";
        TimeoutStopSec = "30s";

        DynamicUser = true;
        StateDirectory = "ghostcache";
        StateDirectoryMode = "0700";
        UMask = "0077";
        # The onion address is printed on stdout for an operator at a terminal; keep it out
        # of the journal (`ghostcache onion-address` prints it).
        StandardOutput = "null";
        LoadCredential = lib.optional (cfg.credentialFile != null) "master-key:${cfg.credentialFile}";

        LimitCORE = 0;
        LimitNOFILE = 8192;
        MemoryMax = "2G";
        TasksMax = 256;

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
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
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
    };
  };
}
