// ghostcache end-to-end core: WebCrypto, the key ring, the JSON API and the WebSocket.
// Plain JavaScript, no framework, no build step, no eval, no third-party code.
// Byte layouts match src/e2e/mod.rs exactly; change both together.
'use strict';

(function () {
  const enc = new TextEncoder();
  const dec = new TextDecoder('utf-8', { fatal: true });
  const subtle = window.crypto && window.crypto.subtle;

  // ---- bytes ---------------------------------------------------------------------------
  function b64u(bytes) {
    const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    let s = '';
    for (let i = 0; i < b.length; i += 0x8000) {
      s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
    }
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  function unb64u(text) {
    const s = atob(String(text).replace(/-/g, '+').replace(/_/g, '/'));
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function concat(parts) {
    let n = 0;
    for (const p of parts) n += p.length;
    const out = new Uint8Array(n);
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  }
  function u8(n) { return new Uint8Array([n & 0xff]); }
  function u32(n) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n >>> 0); return b; }
  function u64(n) { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(n)); return b; }
  function i64(n) { const b = new Uint8Array(8); new DataView(b.buffer).setBigInt64(0, BigInt(n)); return b; }
  function cmp(a, b) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
    return a.length - b.length;
  }
  async function sha256(bytes) { return new Uint8Array(await subtle.digest('SHA-256', bytes)); }
  function random(n) { return window.crypto.getRandomValues(new Uint8Array(n)); }

  const TAG_MESSAGE = enc.encode('ghostcache-e2e-msg-v1\0');
  const TAG_EPOCH = enc.encode('ghostcache-e2e-epoch-v1\0');
  const TAG_KEYS = enc.encode('ghostcache-e2e-keys-v1\0');
  const TAG_NAME = enc.encode('ghostcache-e2e-name-v1\0');
  const TAG_RING = enc.encode('ghostcache-e2e-ring-v1\0');
  const TAG_SAFETY = enc.encode('ghostcache-safety-v1\0');

  // ---- the page ------------------------------------------------------------------------
  const app = document.getElementById('e2e-app');
  const csrf = app ? app.dataset.csrf : '';

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, v);
    }
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function status(text) {
    const s = document.getElementById('e2e-status');
    if (s) s.textContent = text;
  }
  // Show the application instead of the "needs JavaScript" notice, if WebCrypto is here.
  function start() {
    if (!app) return false;
    if (!subtle || !window.WebSocket) {
      const n = document.getElementById('e2e-needs-js');
      if (n) n.querySelector('h2').textContent = 'This browser lacks WebCrypto (it needs a secure context)';
      return false;
    }
    const notice = document.getElementById('e2e-needs-js');
    if (notice) notice.hidden = true;
    app.hidden = false;
    return true;
  }

  async function api(path, body) {
    const init = { credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.method = 'POST';
      init.headers['Content-Type'] = 'application/json';
      init.headers['X-CSRF-Token'] = csrf;
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    let j = null;
    try { j = await r.json(); } catch (e) { j = null; }
    if (!r.ok) {
      const err = new Error((j && j.error) || ('The server answered ' + r.status + '.'));
      err.status = r.status;
      throw err;
    }
    return j;
  }

  // ---- password derivation and the key ring --------------------------------------------
  // PBKDF2-SHA256(password, salt, N) -> 64 bytes: login secret (sent instead of the
  // password where the login form supports it) || wrapping secret (never leaves the tab).
  async function derive(password, saltB64, iterations) {
    const base = await subtle.importKey('raw', enc.encode(password), 'PBKDF2', false, ['deriveBits']);
    const bits = new Uint8Array(await subtle.deriveBits(
      { name: 'PBKDF2', hash: 'SHA-256', salt: unb64u(saltB64), iterations: iterations }, base, 512));
    return { login: bits.slice(0, 32), wrap: bits.slice(32, 64) };
  }
  function wrapStoreKey(me) { return 'gc-e2e-wrap:' + me; }
  function rememberWrap(me, wrap) { sessionStorage.setItem(wrapStoreKey(me), b64u(wrap)); }
  // The wrapping secret of this tab: remembered per member, or handed over by the login
  // form (login-secret.js), which knows the name but not the member's id.
  function recalledWrap(me) {
    const v = sessionStorage.getItem(wrapStoreKey(me.id));
    if (v) return unb64u(v);
    const handed = sessionStorage.getItem('gc-login-wrap');
    sessionStorage.removeItem('gc-login-wrap');
    try {
      const h = handed && JSON.parse(handed);
      if (h && h.name === me.name && typeof h.wrap === 'string') {
        sessionStorage.setItem(wrapStoreKey(me.id), h.wrap);
        return unb64u(h.wrap);
      }
    } catch (e) { /* not ours: ignored */ }
    return null;
  }
  async function wrapKey(wrap) {
    return subtle.importKey('raw', wrap, 'AES-GCM', false, ['encrypt', 'decrypt']);
  }
  async function sealRing(me, wrap, ring) {
    const iv = random(12);
    const key = await wrapKey(wrap);
    const ct = new Uint8Array(await subtle.encrypt(
      { name: 'AES-GCM', iv: iv, additionalData: concat([TAG_RING, unb64u(me)]) },
      key, enc.encode(JSON.stringify(ring))));
    return 'v1.' + b64u(iv) + '.' + b64u(ct);
  }
  async function openRing(me, wrap, text) {
    const parts = String(text).split('.');
    if (parts.length !== 3 || parts[0] !== 'v1') throw new Error('unknown key ring format');
    const key = await wrapKey(wrap);
    const plain = await subtle.decrypt(
      { name: 'AES-GCM', iv: unb64u(parts[1]), additionalData: concat([TAG_RING, unb64u(me)]) },
      key, unb64u(parts[2]));
    return JSON.parse(dec.decode(plain));
  }

  const OAEP = { name: 'RSA-OAEP', hash: 'SHA-256' };
  function signAlgo(scheme) {
    return scheme === 'ecdsa-p256'
      ? { gen: { name: 'ECDSA', namedCurve: 'P-256' }, imp: { name: 'ECDSA', namedCurve: 'P-256' }, op: { name: 'ECDSA', hash: 'SHA-256' } }
      : { gen: { name: 'RSA-PSS', modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
          imp: { name: 'RSA-PSS', hash: 'SHA-256' }, op: { name: 'RSA-PSS', saltLength: 32 } };
  }
  async function importVerify(scheme, spki) {
    return subtle.importKey('spki', spki, signAlgo(scheme).imp, false, ['verify']);
  }
  async function verify(scheme, key, sig, data) {
    try { return await subtle.verify(signAlgo(scheme).op, key, sig, data); } catch (e) { return false; }
  }

  // The ring in memory: generation -> { scheme, dec (CryptoKey), sign (CryptoKey) }.
  async function importRing(ring) {
    const out = new Map();
    for (const g of ring.gens) {
      out.set(g.gen, {
        scheme: g.scheme,
        dec: await subtle.importKey('pkcs8', unb64u(g.enc), OAEP, false, ['decrypt']),
        sign: await subtle.importKey('pkcs8', unb64u(g.sign), signAlgo(g.scheme).imp, false, ['sign']),
      });
    }
    return out;
  }

  // Make a new generation of keys and register it (generation 1 turns end-to-end on).
  async function makeKeys(me, wrap, oldRing) {
    const scheme = me.scheme;
    const generation = me.keys ? me.keys.generation + 1 : 1;
    const encPair = await subtle.generateKey(
      { name: 'RSA-OAEP', modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      true, ['encrypt', 'decrypt']);
    const signPair = await subtle.generateKey(signAlgo(scheme).gen, true, ['sign', 'verify']);
    const encPub = new Uint8Array(await subtle.exportKey('spki', encPair.publicKey));
    const signPub = new Uint8Array(await subtle.exportKey('spki', signPair.publicKey));
    const statement = concat([TAG_KEYS, unb64u(me.id), u32(generation), u8(scheme === 'ecdsa-p256' ? 2 : 1),
      await sha256(encPub), await sha256(signPub)]);
    const proof = new Uint8Array(await subtle.sign(signAlgo(scheme).op, signPair.privateKey, statement));
    const gens = (oldRing ? oldRing.gens : []).concat([{
      gen: generation, scheme: scheme,
      enc: b64u(new Uint8Array(await subtle.exportKey('pkcs8', encPair.privateKey))),
      sign: b64u(new Uint8Array(await subtle.exportKey('pkcs8', signPair.privateKey))),
    }]);
    const ring = { v: 1, gens: gens };
    await api('/e2e/api/keys', {
      generation: generation, scheme: scheme, enc_public: b64u(encPub), sign_public: b64u(signPub),
      proof: b64u(proof), ring: await sealRing(me.id, wrap, ring),
    });
    return ring;
  }

  // Load this member's keys: { me, ring (Map) } or a reason.
  async function loadKeys() {
    const me = await api('/e2e/api/me');
    if (!me.keys) return { me: me, ring: null, reason: 'off' };
    const wrap = recalledWrap(me);
    if (!wrap) return { me: me, ring: null, reason: 'locked' };
    try {
      const ring = await openRing(me.id, wrap, me.ring);
      return { me: me, ring: await importRing(ring), raw: ring };
    } catch (e) {
      sessionStorage.removeItem(wrapStoreKey(me.id));
      return { me: me, ring: null, reason: 'locked' };
    }
  }
  // Unlock with the password typed on the page (derived here, never sent).
  async function unlock(me, password) {
    const d = await derive(password, me.salt, me.iterations);
    const ring = await openRing(me.id, d.wrap, me.ring); // throws on a wrong password
    rememberWrap(me.id, d.wrap);
    return ring;
  }
  // Show the unlock form until the keys open; resolves with loadKeys()'s result.
  function unlockFlow(keys) {
    return new Promise((resolve) => {
      const form = document.getElementById('e2e-unlock');
      form.hidden = false;
      status('Your end-to-end keys are locked in this tab.');
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const pw = document.getElementById('e2e-password');
        status('Opening your keys…');
        try {
          await unlock(keys.me, pw.value);
          pw.value = '';
          form.hidden = true;
          status('');
          resolve(await loadKeys());
        } catch (e) {
          status('That password does not open your keys.');
        }
      });
    });
  }

  // ---- epochs ----------------------------------------------------------------------------
  function epochBytes(conv, epoch, maker, makerGen, nameHash, recipients) {
    const parts = [TAG_EPOCH, unb64u(conv), u32(epoch), unb64u(maker), u32(makerGen), nameHash, u32(recipients.length)];
    for (const r of recipients) parts.push(unb64u(r.member), u32(r.generation), r.hash);
    return concat(parts);
  }
  function nameAd(conv, epoch) { return concat([TAG_NAME, unb64u(conv), u32(epoch)]); }

  // Make and post epoch `epoch` for the active participants (with their current keys).
  async function makeEpoch(keys, view, name) {
    const epoch = view.epoch + 1;
    const me = keys.me;
    const myGen = me.keys.generation;
    const mine = keys.ring.get(myGen);
    const raw = random(32);
    const aes = await subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt']);
    const active = view.participants.filter((p) => p.active)
      .sort((a, b) => cmp(unb64u(a.id), unb64u(b.id)));
    const recipients = [];
    for (const p of active) {
      const k = view.keys.find((x) => x.member === p.id && x.generation === p.generation);
      if (!k) throw new Error('missing keys of a participant');
      const pub = await subtle.importKey('spki', unb64u(k.enc_public), OAEP, false, ['encrypt']);
      const wrapped = new Uint8Array(await subtle.encrypt(OAEP, pub, raw));
      recipients.push({ member: p.id, generation: p.generation, wrapped: wrapped, hash: await sha256(wrapped) });
    }
    let nameBytes = new Uint8Array(0);
    if (view.kind === 'group') {
      const iv = random(12);
      const ct = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: iv, additionalData: nameAd(view.id, epoch) },
        aes, enc.encode(name)));
      nameBytes = concat([iv, ct]);
    }
    const signed = epochBytes(view.id, epoch, me.id, myGen, await sha256(nameBytes), recipients);
    const sig = new Uint8Array(await subtle.sign(signAlgo(mine.scheme).op, mine.sign, signed));
    raw.fill(0);
    return api('/e2e/api/epoch', {
      conversation: view.id, epoch: epoch, maker_generation: myGen,
      recipients: recipients.map((r) => ({ member: r.member, generation: r.generation, wrapped: b64u(r.wrapped) })),
      name: nameBytes.length ? b64u(nameBytes) : '', signature: b64u(sig),
    });
  }

  // Verify an epoch and open its key: { key, name } or null (did not verify).
  async function openEpoch(keys, conv, e, publicKeys) {
    try {
      const me = keys.me.id;
      const mineEntry = e.recipients.find((r) => r.member === me);
      const wrapped = unb64u(e.wrapped);
      if (!mineEntry || b64u(await sha256(wrapped)) !== mineEntry.wrapped_hash) return null;
      if (!e.recipients.some((r) => r.member === e.maker)) return null;
      const makerKey = publicKeys.get(e.maker + ':' + e.maker_generation);
      if (!makerKey) return null;
      const nameBytes = unb64u(e.name);
      const signed = epochBytes(conv, e.epoch, e.maker, e.maker_generation, await sha256(nameBytes),
        e.recipients.map((r) => ({ member: r.member, generation: r.generation, hash: unb64u(r.wrapped_hash) })));
      if (!await verify(makerKey.scheme, makerKey.verify, unb64u(e.signature), signed)) return null;
      const gen = keys.ring.get(mineEntry.generation);
      if (!gen) return null;
      const raw = new Uint8Array(await subtle.decrypt(OAEP, gen.dec, wrapped));
      const key = await subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
      raw.fill(0);
      let name = null;
      if (nameBytes.length >= 28) {
        name = dec.decode(await subtle.decrypt(
          { name: 'AES-GCM', iv: nameBytes.slice(0, 12), additionalData: nameAd(conv, e.epoch) }, key, nameBytes.slice(12)));
      }
      return { key: key, name: name };
    } catch (err) {
      return null;
    }
  }

  // Public keys of a view, imported: "member:generation" -> { scheme, verify, enc, sign }.
  async function importPublicKeys(list) {
    const out = new Map();
    for (const k of list) {
      try {
        out.set(k.member + ':' + k.generation, {
          scheme: k.scheme, verify: await importVerify(k.scheme, unb64u(k.sign_public)),
          enc: unb64u(k.enc_public), sign: unb64u(k.sign_public),
        });
      } catch (e) { /* a key that does not import verifies nothing */ }
    }
    return out;
  }

  // ---- messages --------------------------------------------------------------------------
  function header(conv, h) {
    return concat([TAG_MESSAGE, unb64u(conv), unb64u(h.sender), u32(h.sender_generation), u32(h.epoch),
      u64(h.client_seq), i64(h.sent_at), u8(h.expires_at == null ? 0 : 1), i64(h.expires_at == null ? 0 : h.expires_at)]);
  }
  async function sealMessage(keys, conv, epochKey, h, text) {
    const iv = random(12);
    const ad = header(conv, h);
    const ct = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: iv, additionalData: ad }, epochKey, enc.encode(text)));
    const gen = keys.ring.get(h.sender_generation);
    const sig = new Uint8Array(await subtle.sign(signAlgo(gen.scheme).op, gen.sign, concat([ad, iv, ct])));
    return { iv: b64u(iv), ct: b64u(ct), sig: b64u(sig) };
  }
  // Verify, then decrypt: the text, or null (did not verify).
  async function openMessage(m, epochKey, senderKey) {
    if (!epochKey || !senderKey) return null;
    try {
      const ad = header(m.conv, m);
      const iv = unb64u(m.iv);
      const ct = unb64u(m.ct);
      if (!await verify(senderKey.scheme, senderKey.verify, unb64u(m.sig), concat([ad, iv, ct]))) return null;
      return dec.decode(await subtle.decrypt({ name: 'AES-GCM', iv: iv, additionalData: ad }, epochKey, ct));
    } catch (e) {
      return null;
    }
  }

  // ---- safety numbers --------------------------------------------------------------------
  // 60 digits from SHA-512 over both members' ids and key hashes, sorted by id.
  async function safetyNumber(people) {
    const sorted = people.slice().sort((a, b) => cmp(unb64u(a.id), unb64u(b.id)));
    const parts = [TAG_SAFETY];
    for (const p of sorted) parts.push(unb64u(p.id), await sha256(p.enc), await sha256(p.sign));
    const h = new Uint8Array(await subtle.digest('SHA-512', concat(parts)));
    const groups = [];
    for (let i = 0; i < 12; i++) {
      let v = 0;
      for (let j = 0; j < 5; j++) v = v * 256 + h[i * 5 + j];
      groups.push(String(v % 100000).padStart(5, '0'));
    }
    return groups.join(' ');
  }

  // ---- the WebSocket ---------------------------------------------------------------------
  function connect(handlers) {
    const proto = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const ws = new WebSocket(proto + location.host + '/e2e/ws');
    let ref = 0;
    const waiting = new Map();
    ws.addEventListener('message', (ev) => {
      let f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if ((f.t === 'ack' || f.t === 'error') && waiting.has(f.ref)) {
        const w = waiting.get(f.ref);
        waiting.delete(f.ref);
        if (f.t === 'ack') w.resolve(f); else w.reject(new Error(f.error));
        return;
      }
      if (handlers[f.t]) handlers[f.t](f);
    });
    ws.addEventListener('close', (ev) => {
      for (const w of waiting.values()) w.reject(new Error('The connection closed.'));
      waiting.clear();
      if (handlers.close) handlers.close(ev);
    });
    return {
      ws: ws,
      send(frame) {
        return new Promise((resolve, reject) => {
          ref += 1;
          frame.t = 'send';
          frame.ref = ref;
          waiting.set(ref, { resolve: resolve, reject: reject });
          ws.send(JSON.stringify(frame));
        });
      },
    };
  }

  // UTC "YYYY-MM-DD HH:MM UTC", as the server's pages show times.
  function utcMinute(t) {
    const d = new Date(t * 1000);
    const p = (n) => String(n).padStart(2, '0');
    return d.getUTCFullYear() + '-' + p(d.getUTCMonth() + 1) + '-' + p(d.getUTCDate()) + ' ' +
      p(d.getUTCHours()) + ':' + p(d.getUTCMinutes()) + ' UTC';
  }

  window.GC = Object.freeze({
    b64u, unb64u, concat, sha256, el, status, start, api, derive, rememberWrap, recalledWrap, sealRing, openRing,
    makeKeys, loadKeys, unlock, unlockFlow, makeEpoch, openEpoch, importPublicKeys, sealMessage,
    openMessage, safetyNumber, connect, utcMinute, nameAd,
  });
}());
