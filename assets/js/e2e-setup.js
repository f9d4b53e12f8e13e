// ghostcache: the end-to-end settings page (turn end-to-end mode on, make new keys).
'use strict';

(function () {
  const GC = window.GC;
  if (!GC || !GC.start()) return;

  async function main() {
    let keys = await GC.loadKeys();
    const section = document.getElementById('e2e-setup');
    const enable = document.getElementById('e2e-enable');
    const rekey = document.getElementById('e2e-rekey');
    if (keys.reason === 'locked') keys = await GC.unlockFlow(keys);
    section.hidden = false;

    function show() {
      if (keys.me.keys) {
        enable.hidden = true;
        rekey.hidden = false;
        GC.status('End-to-end mode is on (key generation ' + keys.me.keys.generation + ', ' +
          keys.me.keys.scheme + ').');
      } else {
        enable.hidden = false;
        rekey.hidden = true;
        GC.status('End-to-end mode is off.');
      }
    }
    show();
    // The wrapping key this tab's login derived (login-secret.js), if any: then the
    // password need not be typed again.
    const handed = keys.me.keys ? null : GC.recalledWrap(keys.me);
    const pw = document.getElementById('e2e-enable-password');
    if (handed) {
      pw.required = false;
      pw.closest('label').hidden = true;
    }

    enable.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      GC.status('Making your keys in this browser…');
      try {
        const wrap = handed || (await GC.derive(pw.value, keys.me.salt, keys.me.iterations)).wrap;
        pw.value = '';
        await GC.makeKeys(keys.me, wrap, null);
        GC.rememberWrap(keys.me.id, wrap);
        keys = await GC.loadKeys();
        show();
      } catch (e) {
        GC.status('Could not turn end-to-end mode on: ' + e.message);
      }
    });

    rekey.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      GC.status('Making new keys in this browser…');
      try {
        const wrap = GC.unb64u(sessionStorage.getItem('gc-e2e-wrap:' + keys.me.id));
        await GC.makeKeys(keys.me, wrap, keys.raw);
        keys = await GC.loadKeys();
        show();
      } catch (e) {
        GC.status('Could not make new keys: ' + e.message);
      }
    });
  }

  main().catch((e) => GC.status('Something went wrong: ' + e.message));
}());
