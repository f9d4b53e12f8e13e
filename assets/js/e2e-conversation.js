// ghostcache: one end-to-end conversation or group. Verifies every epoch and message in
// this browser before showing a word; withholds what does not verify.
'use strict';

(function () {
  const GC = window.GC;
  if (!GC || !GC.start()) return;
  const el = GC.el;
  const app = document.getElementById('e2e-app');
  const convId = app.dataset.conversation;

  let keys = null;
  let view = null;
  let epochs = new Map(); // epoch -> { key, name } (verified)
  let publicKeys = new Map();
  let groupName = null;
  let clientSeq = 0;
  let offset = 0; // server time - local time, seconds
  let socket = null;
  let rekeying = false;
  let reloading = null; // the running reload, if any
  let reloadAgain = false; // something changed while it ran: run it once more
  let drawn = 0; // how many times the list was redrawn
  const lastClientSeq = new Map(); // sender -> last client_seq shown
  const shown = new Set();

  const list = document.getElementById('e2e-messages');
  const sendForm = document.getElementById('e2e-send');

  function nameOf(id) {
    const p = view.participants.find((x) => x.id === id);
    return p ? p.name : 'a former member';
  }
  function serverNow() { return Math.floor(Date.now() / 1000) + offset; }

  function removeMessage(seq) {
    const li = document.getElementById('m' + seq);
    if (li) li.remove();
  }

  // Delete one of your own messages for everyone: the server removes it as its deadline
  // would and tells the others' open pages (the `expired` event).
  function deleteButton(seq, when) {
    const b = el('button', { type: 'button', class: 'link delete',
      'aria-label': 'Delete for everyone: your message of ' + when }, 'Delete for everyone');
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        await GC.api('/e2e/api/delete', { conversation: convId, seq });
        removeMessage(seq);
        GC.status('Message deleted for everyone.');
      } catch (e) {
        b.disabled = false;
        GC.status('Not deleted: ' + e.message);
      }
    });
    return b;
  }

  async function showMessage(m) {
    if (shown.has(m.seq)) return;
    if (m.expires_at != null && m.expires_at <= serverNow()) return;
    shown.add(m.seq);
    const epoch = epochs.get(m.epoch);
    const senderKey = publicKeys.get(m.sender + ':' + m.sender_generation);
    const list0 = drawn;
    let text = await GC.openMessage(m, epoch && epoch.key, senderKey);
    // The list was redrawn meanwhile, from a view fetched after this message was stored:
    // it is there already (shown twice, the second would fail the order check below).
    if (list0 !== drawn) return;
    // Each sender's sequence numbers must increase in the server's order (no replays).
    const last = lastClientSeq.get(m.sender) || 0;
    if (text !== null && m.client_seq <= last) text = null;
    if (text !== null) lastClientSeq.set(m.sender, m.client_seq);
    const mine = m.sender === view.me;
    const li = el('li', { id: 'm' + m.seq, class: 'msg' + (mine ? ' mine' : ''),
      'data-status': text === null ? 'bad' : 'verified', 'data-seq': String(m.seq) });
    const head = el('header');
    head.append(el('strong', { class: 'sender' }, mine ? 'You' : nameOf(m.sender)), ' ',
      el('time', {}, GC.utcMinute(m.sent_at)), ' ');
    if (text === null) {
      head.append(el('span', { class: 'sig bad' }, '✗ did not verify: message withheld'));
    } else {
      head.append(el('span', { class: 'sig ok' }, '✓ verified in your browser (end-to-end)'));
    }
    if (m.expires_at != null) {
      head.append(' ', el('span', { class: 'timer' }, '⏱ disappears ' + GC.utcMinute(m.expires_at)));
      const left = (m.expires_at - serverNow()) * 1000;
      setTimeout(() => removeMessage(m.seq), Math.max(0, left));
    }
    li.append(head);
    if (text !== null) li.append(el('p', { class: 'text', dir: 'auto' }, text));
    if (mine) li.append(deleteButton(m.seq, GC.utcMinute(m.sent_at)));
    // Keep server order.
    const after = Array.from(list.children).find((c) => Number(c.dataset.seq) > m.seq);
    list.insertBefore(li, after || null);
  }

  async function renderMembers() {
    const box = document.getElementById('e2e-members');
    box.replaceChildren();
    const ul = el('ul', { class: 'members' });
    for (const p of view.participants.filter((x) => x.active)) {
      const k = publicKeys.get(p.id + ':' + p.generation);
      const li = el('li', { 'data-member': p.id }, p.id === view.me ? 'You' : p.name);
      if (k) {
        const fp = GC.b64u((await GC.sha256(GC.concat([k.enc, k.sign]))).slice(0, 12));
        li.append(' ', el('code', { class: 'fingerprint' }, fp));
      }
      if (p.id !== view.me) li.append(' ', el('span', { class: 'presence', 'data-online': String(p.online) }, p.online ? 'online' : 'offline'));
      if (view.kind === 'group' && view.creator === view.me && p.id !== view.me) {
        const b = el('button', { type: 'button', class: 'link' }, 'Remove');
        b.addEventListener('click', async () => {
          try {
            await GC.api('/e2e/api/group/remove', { group: convId, member: p.id });
            await reload();
          } catch (e) { GC.status(e.message); }
        });
        li.append(' ', b);
      }
      ul.append(li);
    }
    for (const i of view.invited) ul.append(el('li', { class: 'invited' }, i.name + ' (invited)'));
    box.append(ul);
    if (view.kind === 'direct' && view.state === 'active') {
      const people = view.participants.filter((x) => x.active).map((p) => {
        const k = publicKeys.get(p.id + ':' + p.generation);
        return k ? { id: p.id, enc: k.enc, sign: k.sign } : null;
      });
      if (people.length === 2 && people.every((x) => x)) {
        document.getElementById('e2e-safety-number').textContent = await GC.safetyNumber(people);
        document.getElementById('e2e-safety').hidden = false;
      }
    }
  }

  async function maybeRekey() {
    if (rekeying || view.state !== 'active' || !(view.rekey || view.epoch === 0)) return false;
    const active = view.participants.filter((p) => p.active);
    if (!active.every((p) => p.generation)) return false;
    let name = '';
    if (view.kind === 'group') {
      name = groupName || sessionStorage.getItem('gc-e2e-newname:' + convId);
      if (!name) return false; // a member who knows the name makes the key
    }
    rekeying = true;
    try {
      await GC.makeEpoch(keys, view, name);
      sessionStorage.removeItem('gc-e2e-newname:' + convId);
      return true;
    } catch (e) {
      if (e.status !== 409) GC.status('Could not make the new key: ' + e.message);
      return e.status === 409;
    } finally {
      rekeying = false;
    }
  }

  // Fetch the conversation and redraw the page. One reload at a time: a reload whose view
  // was fetched before a live message was stored would otherwise redraw the list without
  // it after the message was shown, or finish after a newer reload and undo it. A reload
  // asked for while one runs makes that one run once more, with a fresh view.
  function reload() {
    if (reloading) {
      reloadAgain = true;
      return reloading;
    }
    reloading = (async () => {
      try {
        do {
          reloadAgain = false;
          await draw();
        } while (reloadAgain);
      } finally {
        reloading = null;
      }
    })();
    return reloading;
  }

  async function draw() {
    const fresh = await GC.api('/e2e/api/conv/' + convId);
    const freshKeys = await GC.importPublicKeys(fresh.keys);
    const opens = new Map();
    let name = null;
    for (const e of fresh.epochs) {
      const opened = await GC.openEpoch(keys, convId, e, freshKeys);
      if (opened) {
        opens.set(e.epoch, opened);
        if (opened.name) name = opened.name;
      }
    }
    // The new view replaces the old one all at once: a send meanwhile used the old one
    // whole (its epoch with its key), never a view whose keys were still being opened.
    view = fresh;
    publicKeys = freshKeys;
    epochs = opens;
    groupName = name;
    offset = view.now - Math.floor(Date.now() / 1000);
    clientSeq = Math.max(clientSeq, view.last_client_seq);
    if (await maybeRekey()) return draw();
    const state = document.getElementById('e2e-state');
    const accept = document.getElementById('e2e-accept');
    accept.hidden = view.state !== 'proposed-to-me';
    document.getElementById('e2e-leave').hidden = view.kind !== 'group';
    document.getElementById('e2e-invite').hidden = !(view.kind === 'group' && view.creator === view.me);
    if (view.kind === 'group') {
      document.querySelector('h1').textContent = groupName || 'End-to-end group';
    } else {
      const other = view.participants.find((p) => p.id !== view.me);
      document.querySelector('h1').textContent = 'End-to-end with ' + (other ? other.name : '');
    }
    let ready = view.state === 'active' && view.epoch > 0 && !view.rekey && epochs.has(view.epoch);
    if (view.state === 'proposed-by-me') state.textContent = 'You proposed end-to-end encryption; waiting for them to accept.';
    else if (view.state === 'proposed-to-me') state.textContent = 'They propose end-to-end encryption.';
    else if (!ready) state.textContent = 'Waiting for a member\'s browser to make the conversation\'s new key.';
    else state.textContent = 'End-to-end encrypted (key epoch ' + view.epoch + ').';
    state.dataset.ready = String(ready);
    sendForm.hidden = !ready;
    await renderMembers();
    list.replaceChildren();
    drawn += 1;
    shown.clear();
    lastClientSeq.clear();
    for (const m of view.messages) await showMessage(m);
    showMembershipEvents();
  }

  // Joins and departures, as the verified key epochs record them: each epoch's maker
  // signed its list of recipients, so a member who is in one epoch's list and not in the
  // previous one joined, and the other way round left or was removed. Only the epochs this
  // member can open are compared (a newcomer sees nothing from before their own join).
  function showMembershipEvents() {
    if (view.kind !== 'group') return;
    const byEpoch = new Map(view.epochs.map((e) => [e.epoch, e]));
    const open = Array.from(epochs.keys()).sort((a, b) => a - b);
    const lastSeq = view.messages.reduce((n, m) => Math.max(n, m.seq), 0);
    for (let i = 1; i < open.length; i += 1) {
      const before = new Set(byEpoch.get(open[i - 1]).recipients.map((r) => r.member));
      const after = new Set(byEpoch.get(open[i]).recipients.map((r) => r.member));
      const first = view.messages.find((m) => m.epoch >= open[i]);
      const seq = (first ? first.seq : lastSeq + 1) - 0.5;
      const lines = [];
      for (const id of after) if (!before.has(id)) lines.push((id === view.me ? 'You' : nameOf(id)) + ' joined');
      for (const id of before) if (!after.has(id)) lines.push(nameOf(id) + ' left or was removed');
      for (const line of lines) {
        const li = el('li', { 'data-seq': String(seq) });
        li.append(el('p', { class: 'event' }, line + ' (new key, epoch ' + open[i] + ').'));
        const later = Array.from(list.children).find((c) => Number(c.dataset.seq) > seq);
        list.insertBefore(li, later || null);
      }
    }
  }

  async function send(ev) {
    ev.preventDefault();
    const area = document.getElementById('e2e-text');
    const text = area.value.replace(/\r\n?/g, '\n').trim();
    if (!text) return;
    const epoch = epochs.get(view.epoch);
    if (!epoch) { GC.status('The conversation has no key yet.'); return; }
    const timer = document.getElementById('e2e-timer').value;
    const sentAt = serverNow();
    clientSeq += 1;
    const h = {
      sender: view.me, sender_generation: keys.me.keys.generation, epoch: view.epoch,
      client_seq: clientSeq, sent_at: sentAt, expires_at: timer ? sentAt + Number(timer) : null,
    };
    try {
      const sealed = await GC.sealMessage(keys, convId, epoch.key, h, text);
      await socket.send({
        conv: convId, generation: h.sender_generation, epoch: h.epoch, client_seq: h.client_seq,
        sent_at: h.sent_at, expires_at: h.expires_at, iv: sealed.iv, ct: sealed.ct, sig: sealed.sig,
      });
      area.value = '';
      GC.status('Sent.');
    } catch (e) {
      GC.status('Not sent: ' + e.message);
      if (/new key|waiting/.test(e.message)) await reload();
    }
  }

  async function main() {
    keys = await GC.loadKeys();
    if (keys.reason === 'locked') keys = await GC.unlockFlow(keys);
    if (!keys.ring) { GC.status('Turn on end-to-end mode first (/e2e/setup).'); return; }
    document.getElementById('e2e-conv').hidden = false;
    socket = GC.connect({
      hello: (f) => { offset = f.now - Math.floor(Date.now() / 1000); },
      msg: async (f) => {
        if (f.conv !== convId) return;
        // During a reload, the message is in the view of its next pass.
        if (reloading || !epochs.has(f.epoch)) { await reload(); return; }
        await showMessage(f);
      },
      expired: (f) => { if (f.conv === convId) removeMessage(f.seq); },
      changed: (f) => { if (f.conv === convId) reload().catch((e) => GC.status(e.message)); },
      refresh: () => reload().catch((e) => GC.status(e.message)),
      closed: (f) => {
        if (f.conv !== convId) return;
        sendForm.hidden = true;
        document.getElementById('e2e-state').textContent = 'This conversation ended for you.';
      },
      presence: (f) => {
        const s = document.querySelector('[data-member="' + f.member + '"] .presence');
        if (s) { s.textContent = f.online ? 'online' : 'offline'; s.dataset.online = String(f.online); }
      },
      close: (ev) => {
        sendForm.hidden = true;
        GC.status('The live connection closed (' + (ev.reason || ev.code) + '). Reload the page to continue.');
      },
    });
    await new Promise((resolve) => {
      if (socket.ws.readyState === WebSocket.OPEN) resolve();
      socket.ws.addEventListener('open', resolve, { once: true });
      socket.ws.addEventListener('close', resolve, { once: true });
    });
    await reload();
    sendForm.addEventListener('submit', send);
    document.getElementById('e2e-accept').addEventListener('click', async () => {
      try {
        await GC.api('/e2e/api/accept', { conversation: convId });
        await reload();
      } catch (e) { GC.status(e.message); }
    });
    document.getElementById('e2e-leave').addEventListener('click', async () => {
      try {
        await GC.api('/e2e/api/group/leave', { conversation: convId });
        location.assign('/e2e');
      } catch (e) { GC.status(e.message); }
    });
    document.getElementById('e2e-invite').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const input = document.getElementById('e2e-invite-name');
      try {
        const r = await GC.api('/e2e/api/group/invite', { group: convId, username: input.value });
        GC.status(input.value + (r.online ? ' is invited and online: they can join now.' :
          ' is offline. The invitation waits for them.'));
        input.value = '';
        await reload();
      } catch (e) { GC.status(e.message); }
    });
  }

  main().catch((e) => GC.status('Something went wrong: ' + e.message));
}());
