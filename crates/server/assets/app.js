// Fleetcare dashboard: the answer of an action (a button's hx-post with data-done, or a
// form.json-post) is said in the page's live region (#status), so sighted and screen-reader
// users both hear it.
function say(ok, text) {
  var status = document.getElementById('status');
  if (!status) return;
  status.textContent = text;
  status.className = ok ? 'status ok' : 'status error';
}
function refused(code, body) {
  var msg = 'The center refused (' + (code || 'no answer') + ')';
  try {
    var b = JSON.parse(body);
    if (b && b.error) msg = msg + ': ' + b.error;
  } catch (_) { /* not JSON */ }
  return msg;
}
// Said when the answer arrives, even if a live refresh replaced the button meanwhile (its
// own events would no longer reach the document).
document.addEventListener('htmx:beforeRequest', function (e) {
  var el = e.detail.elt;
  var xhr = e.detail.xhr;
  if (!el || !xhr || !el.hasAttribute('data-done')) return;
  var done = el.getAttribute('data-done');
  xhr.addEventListener('loadend', function () {
    if (xhr.status >= 200 && xhr.status < 300) {
      say(true, done);
    } else {
      say(false, refused(xhr.status, xhr.responseText));
    }
  });
});
// A form whose fields an API endpoint takes as JSON (the API's own body, as the CLI sends
// it): posted with the session cookie and the page's organization header.
document.addEventListener('submit', function (e) {
  var form = e.target;
  if (!form.classList || !form.classList.contains('json-post')) return;
  e.preventDefault();
  var body = {};
  new FormData(form).forEach(function (v, k) { body[k] = v; });
  var headers = { 'Content-Type': 'application/json' };
  var scope = document.body.getAttribute('hx-headers');
  if (scope) {
    try { Object.assign(headers, JSON.parse(scope)); } catch (_) { /* none */ }
  }
  fetch(form.getAttribute('data-url'), {
    method: 'POST', headers: headers, body: JSON.stringify(body), credentials: 'same-origin'
  }).then(function (r) {
    return r.text().then(function (t) {
      if (r.ok) {
        say(true, form.getAttribute('data-done'));
        form.reset();
        var d = form.closest('details');
        if (d) d.open = false;
      } else {
        say(false, refused(r.status, t));
      }
    });
  }, function () { say(false, refused(0, '')); });
});
// A lost connection to the center is said too; the stream reconnects by itself.
document.addEventListener('htmx:sseError', function () {
  var live = document.getElementById('live');
  if (live) live.textContent = 'Live updates: reconnecting…';
});
document.addEventListener('htmx:sseOpen', function () {
  var live = document.getElementById('live');
  if (live) live.textContent = 'Live updates: on';
});
// A refresh that was answered with the login form: the session is over (logged out, expired
// or disabled). Go to the login form, and come back here after it.
document.addEventListener('htmx:beforeSwap', function (e) {
  var xhr = e.detail.xhr;
  if (xhr && xhr.responseURL && xhr.responseURL.indexOf('/ui/login') !== -1) {
    e.detail.shouldSwap = false;
    window.location.assign('/ui/login?next=' + encodeURIComponent(window.location.pathname + window.location.search));
  }
});
// A live refresh does not replace a part of the page where someone is filling a form (an open
// take-out form, a field with the focus): their typing would be lost. The part is refreshed
// once the form is sent or closed.
function busy(target) {
  if (!target || !target.querySelector) return false;
  var a = document.activeElement;
  if (a && target.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) return true;
  return !!target.querySelector('details[open] form');
}
var held = [];
document.addEventListener('htmx:beforeSwap', function (e) {
  var elt = e.detail.requestConfig && e.detail.requestConfig.elt;
  if (!e.detail.shouldSwap || !elt || !elt.hasAttribute('hx-select') || !busy(e.detail.target)) return;
  e.detail.shouldSwap = false;
  if (held.indexOf(elt) === -1) held.push(elt);
});
function refreshHeld() {
  var now = held;
  held = [];
  now.forEach(function (elt) {
    if (!document.body.contains(elt)) return;
    var target = document.querySelector(elt.getAttribute('hx-target'));
    if (busy(target)) { held.push(elt); return; }
    htmx.ajax('GET', elt.getAttribute('hx-get'), {
      source: elt, target: elt.getAttribute('hx-target'),
      select: elt.getAttribute('hx-select'), swap: 'outerHTML'
    });
  });
}
document.addEventListener('toggle', function (e) {
  if (e.target.tagName === 'DETAILS' && !e.target.open) refreshHeld();
}, true);
document.addEventListener('focusout', function () { setTimeout(refreshHeld, 0); });
// Times are rendered in UTC by the center; each is shown in the browser's own time zone, with
// the UTC time on hover (and to assistive technology in the title).
var UTC_TIME = /(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) UTC/g;
function pad(n) { return (n < 10 ? '0' : '') + n; }
function localTimes(root) {
  if (!root || !root.ownerDocument) return;
  var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  var found = [];
  for (var n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement && n.parentElement.closest('time, script, style, svg, input, textarea')) continue;
    UTC_TIME.lastIndex = 0;
    if (UTC_TIME.test(n.textContent)) found.push(n);
  }
  found.forEach(function (n) {
    var frag = document.createDocumentFragment();
    var text = n.textContent;
    var last = 0;
    UTC_TIME.lastIndex = 0;
    for (var m = UTC_TIME.exec(text); m; m = UTC_TIME.exec(text)) {
      frag.appendChild(document.createTextNode(text.slice(last, m.index)));
      var d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
      var t = document.createElement('time');
      t.dateTime = d.toISOString();
      t.title = m[0];
      t.textContent = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
        pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
      frag.appendChild(t);
      last = m.index + m[0].length;
    }
    frag.appendChild(document.createTextNode(text.slice(last)));
    n.parentNode.replaceChild(frag, n);
  });
}
document.addEventListener('DOMContentLoaded', function () { localTimes(document.body); });
document.addEventListener('htmx:afterSettle', function (e) { localTimes(e.detail.elt); });
