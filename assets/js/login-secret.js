// ghostcache: login secrets. With JavaScript, the login, registration and settings forms
// derive PBKDF2-SHA256(password, salt, N) in this tab and send only its first half, the
// login secret, in place of the password. The second half, the wrapping secret that opens
// the member's end-to-end keys, never leaves the tab. Without JavaScript the same forms
// send the password and the server derives the same login secret (src/accounts/secret.rs).
// Plain JavaScript, no framework, no build step, no eval, no third-party code.
'use strict';

(function () {
  const GC = window.GC;
  // Without WebCrypto the forms post the password, as they do without JavaScript.
  if (!GC || !window.crypto || !window.crypto.subtle) return;

  const LOGIN_WRAP = 'gc-login-wrap';
  const forms = Array.from(document.querySelectorAll('form[data-derive]'));
  // A login page (first visit, or the answer to a failed attempt) holds no wrapping
  // secret: an attempt that did not log in leaves none behind.
  if (document.querySelector('form[data-keep-wrap]')) sessionStorage.removeItem(LOGIN_WRAP);

  function say(form, text) {
    const s = form.querySelector('.derive-status');
    if (!s) return;
    s.textContent = text;
    s.hidden = !text;
  }

  function hiddenField(form, name, value) {
    let input = form.querySelector('input[type="hidden"][name="' + name + '"]');
    if (!input) {
      input = document.createElement('input');
      input.type = 'hidden';
      input.name = name;
      form.appendChild(input);
    }
    input.value = value;
  }

  async function loginParams(name) {
    const r = await fetch('/login/salt?username=' + encodeURIComponent(name), {
      credentials: 'same-origin', headers: { Accept: 'application/json' },
    });
    if (!r.ok) throw new Error('the server answered ' + r.status);
    return r.json();
  }

  // The shape checks the server makes of a password it receives, made here because it
  // receives only the login secret.
  function shapeError(form, fields) {
    const min = Number(form.dataset.min || 0);
    for (const f of fields) {
      if (f.dataset.secret !== 'new') continue;
      if (Array.from(f.value).length < min) return 'Passwords must be at least ' + min + ' characters long.';
      if (new TextEncoder().encode(f.value).length > 1024) return 'Passwords may be at most 1024 bytes long.';
    }
    if (form.dataset.distinct !== undefined && fields.length === 2 && fields[0].value === fields[1].value) {
      return 'The destruction password must be different from the password.';
    }
    return null;
  }

  // The key ring, opened with the current password's wrapping secret and sealed under the
  // new one's: sent with the password change, stored in its commit.
  async function rewrapRing(form, derived, fields) {
    const me = await GC.api('/e2e/api/me');
    if (!me.keys) return;
    const current = derived.get(fields.find((f) => f.dataset.secret === 'current').dataset.field);
    const next = derived.get(fields.find((f) => f.dataset.secret === 'new').dataset.field);
    let ring;
    try {
      ring = await GC.openRing(me.id, current.wrap, me.ring);
    } catch (e) {
      throw new Error('The current password is wrong.');
    }
    hiddenField(form, 'ring', await GC.sealRing(me.id, next.wrap, ring));
    hiddenField(form, 'ring_generation', String(me.keys.generation));
    return () => GC.rememberWrap(me.id, next.wrap);
  }

  async function derivedSubmit(form) {
    const fields = Array.from(form.querySelectorAll('input[data-secret]'));
    const problem = shapeError(form, fields);
    if (problem) { say(form, problem); return; }
    const nameInput = form.querySelector('input[name="username"]');
    const name = nameInput ? nameInput.value : form.dataset.name;
    say(form, 'Deriving your login secret in this browser…');
    const p = await loginParams(name);
    if (!p.secret) {
      // An account on the older login: its password is checked as it is (Settings says
      // how to move it).
      form.submit();
      return;
    }
    const derived = new Map();
    for (const f of fields) derived.set(f.dataset.field, await GC.derive(f.value, p.salt, p.iterations));
    let after = null;
    if (form.dataset.rewrap !== undefined) after = await rewrapRing(form, derived, fields);
    if (form.dataset.keepWrap !== undefined) {
      const d = derived.get(fields[0].dataset.field);
      sessionStorage.setItem(LOGIN_WRAP, JSON.stringify({ name: p.name, wrap: GC.b64u(d.wrap) }));
    }
    if (after) after();
    for (const f of fields) {
      hiddenField(form, f.dataset.field + '_secret', GC.b64u(derived.get(f.dataset.field).login));
      f.removeAttribute('name');
      f.value = '';
    }
    form.submit();
  }

  for (const form of forms) {
    for (const f of form.querySelectorAll('input[data-secret]')) f.dataset.field = f.name;
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      derivedSubmit(form).catch((e) => say(form, 'Nothing was sent: ' + e.message));
    });
  }
  // Coming back to the page (the back button) finds the fields as they were.
  window.addEventListener('pageshow', () => {
    for (const form of forms) {
      for (const f of form.querySelectorAll('input[data-secret]')) f.name = f.dataset.field;
      for (const h of form.querySelectorAll('input[type="hidden"][name$="_secret"], input[name="ring"], input[name="ring_generation"]')) h.remove();
      say(form, '');
    }
  });
}());
