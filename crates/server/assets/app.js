// Fleetcare dashboard: the answer of an action button (hx-post with data-done) is said in the
// page's live region (#status), so sighted and screen-reader users both hear it.
document.addEventListener('htmx:afterRequest', function (e) {
  var el = e.detail.elt;
  if (!el || !el.hasAttribute('data-done')) return;
  var status = document.getElementById('status');
  if (!status) return;
  var xhr = e.detail.xhr;
  if (e.detail.successful) {
    status.textContent = el.getAttribute('data-done');
    status.className = 'status ok';
    return;
  }
  var msg = 'The center refused (' + (xhr && xhr.status ? xhr.status : 'no answer') + ')';
  try {
    var b = JSON.parse(xhr.responseText);
    if (b && b.error) msg = msg + ': ' + b.error;
  } catch (_) { /* not JSON */ }
  status.textContent = msg;
  status.className = 'status error';
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
