// The overview's live panel: re-rendered by the gateway every 2 seconds.
const REFRESH_MS = 2000;
const live = document.querySelector("[data-live]");

async function refresh() {
  try {
    const response = await fetch(live.dataset.live, { headers: { Accept: "text/html" } });
    if (response.ok) {
      live.innerHTML = await response.text();
      live.dataset.updated = String(Date.now());
    }
  } catch {
    // the gateway is restarting: keep the last view, try again
  }
}

if (live) setInterval(refresh, REFRESH_MS);
