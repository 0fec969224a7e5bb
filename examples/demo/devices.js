(() => {
  const section = document.getElementById("devices");
  const { list, revoke, others, csrf } = section.dataset;
  const headers = { Accept: "application/json" };
  if (csrf) headers["X-CSRFToken"] = csrf;
  const rows = section.querySelector("tbody");

  function say(text, kind) {
    const message = document.createElement("p");
    message.className = `message ${kind}`;
    message.setAttribute("role", "status");
    message.textContent = text;
    document.getElementById("devices-status").replaceChildren(message);
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  const minute = (iso) => iso.slice(0, 16).replace("T", " "); // the API answers in UTC

  async function post(url) {
    const response = await fetch(url, { method: "POST", headers });
    if (response.status === 401) location.reload(); // this device was signed out meanwhile
    else if (!response.ok) say("That did not work; please try again.", "error");
    return response.ok;
  }

  function row(device) {
    const tr = document.createElement("tr");
    const name = cell(device.device);
    name.title = device.user_agent || "";
    tr.append(
      name,
      cell(device.ip || "", "hide-narrow"),
      cell(minute(device.created_at)),
      cell(minute(device.last_seen), "hide-narrow"),
    );
    const action = document.createElement("td");
    if (device.current) {
      action.append(Object.assign(document.createElement("span"), {
        className: "badge", textContent: "this device",
      }));
    } else {
      const button = Object.assign(document.createElement("button"), {
        className: "danger small", textContent: "Sign out",
      });
      button.addEventListener("click", async () => {
        if (await post(revoke.replace("HANDLE", encodeURIComponent(device.handle)))) load();
      });
      action.append(button);
    }
    tr.append(action);
    return tr;
  }

  async function load() {
    const response = await fetch(list, { headers });
    if (response.status === 401) return location.reload();
    if (!response.ok) return say("Your devices cannot be listed right now.", "error");
    rows.replaceChildren(...(await response.json()).sessions.map(row));
  }

  document.getElementById("sign-out-others").addEventListener("click", async () => {
    if (await post(others)) {
      say("Your other devices have been signed out.", "ok");
      load();
    }
  });
  load();
})();
