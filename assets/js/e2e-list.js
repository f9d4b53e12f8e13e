// ghostcache: the end-to-end overview (conversations, proposals, groups, invitations).
'use strict';

(function () {
  const GC = window.GC;
  if (!GC || !GC.start()) return;
  const el = GC.el;

  function link(id, text) {
    return el('a', { href: '/e2e/c/' + id }, text);
  }
  function button(text, onclick) {
    const b = el('button', { type: 'button' }, text);
    b.addEventListener('click', async () => {
      b.disabled = true;
      try { await onclick(); } catch (e) { GC.status(e.message); b.disabled = false; }
    });
    return b;
  }

  async function render(keys) {
    const data = await GC.api('/e2e/api/list');
    const convs = document.getElementById('e2e-conversations');
    const conns = document.getElementById('e2e-connections');
    const invs = document.getElementById('e2e-invitations');
    convs.replaceChildren();
    conns.replaceChildren();
    invs.replaceChildren();
    for (const c of data.conversations) {
      const li = el('li', { 'data-conversation': c.id });
      if (c.group) {
        let name = 'Group (name not readable in this browser yet)';
        if (c.name_epoch && keys.ring) {
          const pub = await GC.importPublicKeys([]);
          const conv = await GC.api('/e2e/api/conv/' + c.id + '?after=18446744073709551614');
          const all = await GC.importPublicKeys(conv.keys);
          const opened = await GC.openEpoch(keys, c.id, c.name_epoch, all.size ? all : pub);
          if (opened && opened.name) name = opened.name;
        }
        li.append(link(c.id, name), ' (end-to-end group)');
      } else {
        const state = c.state === 'active' ? 'end-to-end' :
          c.state === 'proposed-by-me' ? 'proposed, waiting for them' : 'they propose end-to-end';
        li.append(link(c.id, 'With ' + c.peer), ' (' + state + ')');
        if (c.state === 'proposed-to-me') {
          li.append(' ', button('Accept', async () => {
            await GC.api('/e2e/api/accept', { conversation: c.id });
            location.assign('/e2e/c/' + c.id);
          }));
        }
      }
      convs.append(li);
    }
    if (!data.conversations.length) convs.append(el('li', {}, 'None yet.'));
    for (const c of data.connections) {
      const li = el('li', { 'data-connection': c.connection }, c.name + ': ');
      if (c.conversation) {
        li.append(link(c.conversation, 'open the end-to-end conversation'));
      } else if (!keys.me.keys) {
        li.append('turn on end-to-end mode first (');
        li.append(el('a', { href: '/e2e/setup' }, 'settings'), ')');
      } else if (!c.has_keys) {
        li.append('has not turned on end-to-end mode');
      } else {
        li.append(button('Propose end-to-end encryption', async () => {
          const r = await GC.api('/e2e/api/propose', { connection: c.connection });
          location.assign('/e2e/c/' + r.conversation);
        }));
      }
      conns.append(li);
    }
    if (!data.connections.length) conns.append(el('li', {}, 'No connections yet.'));
    for (const i of data.invitations) {
      const li = el('li', { 'data-group': i.group }, i.inviter + ' invites you to an end-to-end group. ');
      li.append(button('Join', async () => {
        await GC.api('/e2e/api/group/join', { conversation: i.group });
        location.assign('/e2e/c/' + i.group);
      }), ' ', button('Decline', async () => {
        await GC.api('/e2e/api/group/decline', { conversation: i.group });
        await render(keys);
      }));
      invs.append(li);
    }
    if (!data.invitations.length) invs.append(el('li', {}, 'None.'));
  }

  async function main() {
    let keys = await GC.loadKeys();
    if (keys.reason === 'locked') keys = await GC.unlockFlow(keys);
    document.getElementById('e2e-lists').hidden = false;
    if (keys.reason === 'off') {
      GC.status('End-to-end mode is off: turn it on in settings (/e2e/setup) to propose conversations or create groups.');
    }
    await render(keys);
    document.getElementById('e2e-create').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const name = document.getElementById('e2e-group-name').value.trim();
      if (!name) return;
      try {
        const r = await GC.api('/e2e/api/group/create', {});
        sessionStorage.setItem('gc-e2e-newname:' + r.conversation, name);
        location.assign('/e2e/c/' + r.conversation);
      } catch (e) {
        GC.status(e.message);
      }
    });
    GC.connect({ changed: () => render(keys), refresh: () => render(keys), closed: () => render(keys) });
  }

  main().catch((e) => GC.status('Something went wrong: ' + e.message));
}());
