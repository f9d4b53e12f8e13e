// ghostcache: files encrypted and decrypted in the browser (the upload page and a file's
// page). The key is made here, or entered here, and never sent: the server receives and
// serves Fernet tokens only, one per line, in the format `ghostcache decrypt` and Python's
// `cryptography` read (`Fernet(key).decrypt(line)`). Without JavaScript both forms work
// as before, with the server encrypting and decrypting.
//
// Fernet: version 0x80, an 8-byte big-endian timestamp, a random 16-byte IV, the
// AES-128-CBC ciphertext (PKCS#7), an HMAC-SHA256 tag over all of that; URL-safe base64
// with padding. The key's first 16 bytes sign, the last 16 encrypt. ghostcache stamps
// chunk i with 2i in the timestamp, plus 1 on the last chunk (files::chunk_stamp).
'use strict';

(function () {
  if (!window.crypto || !window.crypto.subtle) return;
  const subtle = window.crypto.subtle;

  const KEY_FORM = 'A key is 32 random bytes in URL-safe base64: 44 characters of letters, ' +
    'digits, - and _, ending in =. Nothing was kept.';

  function b64u(bytes) {
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_');
  }

  // Strict URL-safe base64 with padding, as Fernet writes it; null otherwise.
  function unb64u(text) {
    if (text.length % 4 !== 0 || !/^[A-Za-z0-9_-]*={0,2}$/.test(text)) return null;
    let s;
    try {
      s = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    } catch (e) {
      return null;
    }
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    // Canonical only: the same bytes must give back the same text.
    return b64u(out) === text ? out : null;
  }

  // The member's own key, checked as the server checks it (files::parse_entered_key):
  // { key: Uint8Array } or { error: message }. Empty: { key: null }.
  function parseKey(raw) {
    const t = raw.replace(/^[ \t\r\n\f]+|[ \t\r\n\f]+$/g, '');
    if (t === '') return { key: null };
    if (/[+/]/.test(t)) {
      return { error: 'That key has + or /, so it is standard base64; Fernet keys use - and _ in their place. ' + KEY_FORM };
    }
    if (!/^[A-Za-z0-9_=-]*$/.test(t)) {
      return { error: 'That key has characters that no key has. ' + KEY_FORM };
    }
    if (t.length === 43 && t.indexOf('=') < 0) return { error: 'That key lacks its final =. ' + KEY_FORM };
    if (t.length !== 44) return { error: 'That key has ' + t.length + ' characters, not 44. ' + KEY_FORM };
    const key = unb64u(t);
    if (!key || key.length !== 32) {
      return { error: 'Those 44 characters do not encode exactly 32 bytes. ' + KEY_FORM };
    }
    return { key };
  }

  async function importKey(raw) {
    const mac = await subtle.importKey('raw', raw.slice(0, 16), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
    const enc = await subtle.importKey('raw', raw.slice(16, 32), { name: 'AES-CBC' }, false, ['encrypt', 'decrypt']);
    return { mac, enc };
  }

  const stamp = (index, last) => index * 2 + (last ? 1 : 0);

  async function seal(keys, plain, index, last) {
    const iv = crypto.getRandomValues(new Uint8Array(16));
    const ct = new Uint8Array(await subtle.encrypt({ name: 'AES-CBC', iv }, keys.enc, plain));
    const token = new Uint8Array(25 + ct.length + 32);
    token[0] = 0x80;
    new DataView(token.buffer).setBigUint64(1, BigInt(stamp(index, last)));
    token.set(iv, 9);
    token.set(ct, 25);
    const tag = await subtle.sign('HMAC', keys.mac, token.subarray(0, 25 + ct.length));
    token.set(new Uint8Array(tag), 25 + ct.length);
    return b64u(token);
  }

  // Verify and decrypt line `index` of a blob; throws with a message the member reads.
  async function open(keys, line, index) {
    const raw = unb64u(line);
    if (!raw || raw.length < 25 + 16 + 32 || (raw.length - 57) % 16 !== 0 || raw[0] !== 0x80) {
      throw new Error('Line ' + (index + 1) + ' of the stored file is not a Fernet token.');
    }
    const body = raw.subarray(0, raw.length - 32);
    const ok = await subtle.verify('HMAC', keys.mac, raw.subarray(raw.length - 32), body);
    if (!ok) {
      throw new Error(index === 0
        ? 'This key does not open this file. Check that you pasted the whole key, and that it is the key of this file.'
        : 'Part ' + (index + 1) + ' of the file does not verify: it was damaged or tampered with.');
    }
    const s = Number(new DataView(raw.buffer, raw.byteOffset).getBigUint64(1));
    if (Math.floor(s / 2) !== index) {
      throw new Error('Part ' + (index + 1) + ' of the file is out of place: it was tampered with.');
    }
    const plain = await subtle.decrypt({ name: 'AES-CBC', iv: raw.subarray(9, 25) }, keys.enc, raw.subarray(25, raw.length - 32));
    return { plain: new Uint8Array(plain), last: s % 2 === 1 };
  }

  function show(el, text) {
    el.textContent = text;
    el.hidden = text === '';
  }

  // The message of a rendered error page (the server refused the upload).
  function pageError(html) {
    const doc = new DOMParser().parseFromString(html, 'text/html');
    const e = doc.querySelector('p.error');
    return e ? e.textContent : null;
  }

  // ---------------------------------------------------------------------------------
  // The upload page

  function uploadPage(form) {
    const status = document.getElementById('e2e-file-status');
    const error = document.getElementById('e2e-file-error');
    const chunk = Number(form.dataset.chunk);
    for (const el of document.querySelectorAll('.e2e-file-server')) el.hidden = true;
    for (const el of document.querySelectorAll('.e2e-file-browser')) el.hidden = false;

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      show(error, '');
      const file = form.elements.file.files[0];
      if (!file) {
        show(error, 'Choose a file to upload.');
        return;
      }
      const entered = parseKey(form.elements.key.value);
      if (entered.error) {
        show(error, entered.error);
        return;
      }
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        const raw = entered.key || crypto.getRandomValues(new Uint8Array(32));
        const keys = await importKey(raw);
        // One chunk of plaintext at a time is read and sealed; each token becomes a small
        // Blob at once, which the browser may keep on disk.
        const count = Math.max(1, Math.ceil(file.size / chunk));
        const parts = [];
        for (let i = 0; i < count; i++) {
          const plain = new Uint8Array(await file.slice(i * chunk, (i + 1) * chunk).arrayBuffer());
          parts.push(new Blob([await seal(keys, plain, i, i === count - 1), '\n']));
          if (i % 16 === 0) show(status, 'Encrypting in your browser… ' + Math.floor(100 * i / count) + ' %');
        }
        show(status, 'Uploading the encrypted file…');
        const body = new FormData();
        body.append('csrf', form.elements.csrf.value);
        body.append('expiry_days', form.elements.expiry_days.value);
        body.append('plain_size', String(file.size));
        body.append('tokens', new Blob(parts, { type: file.type || 'application/octet-stream' }), file.name);
        const r = await fetch(form.action, { method: 'POST', body, credentials: 'same-origin' });
        if (!r.ok || !r.redirected) {
          throw new Error(pageError(await r.text()) || 'The server refused the upload (' + r.status + ').');
        }
        form.hidden = true;
        show(status, '');
        const done = document.getElementById('e2e-file-done');
        document.getElementById('e2e-file-key').value = b64u(raw);
        document.getElementById('e2e-file-link').href = new URL(r.url).pathname;
        done.hidden = false;
      } catch (e) {
        show(status, '');
        show(error, e.message);
      } finally {
        button.disabled = false;
      }
    });
  }

  // ---------------------------------------------------------------------------------
  // A file's page: the keyed download, decrypted here

  function downloadPage(form) {
    const status = document.getElementById('e2e-file-status');
    const error = document.getElementById('e2e-file-error');
    for (const el of document.querySelectorAll('.e2e-file-server')) el.hidden = true;
    for (const el of document.querySelectorAll('.e2e-file-browser')) el.hidden = false;

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      show(error, '');
      const entered = parseKey(form.elements.key.value);
      if (entered.error || !entered.key) {
        show(error, entered.error || 'Enter the key of this file.');
        return;
      }
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        const keys = await importKey(entered.key);
        show(status, 'Downloading the encrypted file…');
        const r = await fetch(form.dataset.raw, { credentials: 'same-origin' });
        if (!r.ok || !r.body) throw new Error('The server did not send the file (' + r.status + ').');
        const reader = r.body.getReader();
        const ascii = new TextDecoder('ascii');
        const parts = [];
        let pending = '';
        let index = 0;
        let ended = false;
        let got = 0;
        const size = Number(form.dataset.size);
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          pending += ascii.decode(value, { stream: true });
          let nl;
          while ((nl = pending.indexOf('\n')) >= 0) {
            const line = pending.slice(0, nl);
            pending = pending.slice(nl + 1);
            if (ended) throw new Error('The stored file goes on after its last part: it was tampered with.');
            const part = await open(keys, line, index);
            parts.push(new Blob([part.plain]));
            got += part.plain.length;
            ended = part.last;
            index++;
          }
          show(status, 'Decrypting in your browser… ' + (size ? Math.floor(100 * got / size) : 100) + ' %');
        }
        if (pending !== '' || !ended) throw new Error('The stored file ends before its last part: it was cut short.');
        const url = URL.createObjectURL(new Blob(parts, { type: 'application/octet-stream' }));
        const a = document.createElement('a');
        a.href = url;
        a.download = form.dataset.name || 'download';
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60000);
        show(status, 'Decrypted in your browser: ' + got + ' bytes.');
        form.dataset.done = String(got);
      } catch (e) {
        show(status, '');
        show(error, e.message);
      } finally {
        button.disabled = false;
      }
    });
  }

  const up = document.getElementById('e2e-file-upload');
  if (up) uploadPage(up);
  const down = document.getElementById('e2e-file-download');
  if (down) downloadPage(down);
})();
