// Light, dark, or the system's choice (prefers-color-scheme): a button cycles them; the choice (not a secret)
// stays in localStorage.
const ITEM = "sightline.theme";
const ORDER = ["auto", "light", "dark"];

function apply(theme, button) {
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  button.textContent = `Theme: ${theme}`;
  button.setAttribute("aria-label", `Colour theme: ${theme}. Change`);
}

export function setupTheme(button) {
  let theme = localStorage.getItem(ITEM);
  if (!ORDER.includes(theme)) theme = "auto";
  apply(theme, button);
  button.addEventListener("click", () => {
    theme = ORDER[(ORDER.indexOf(theme) + 1) % ORDER.length];
    localStorage.setItem(ITEM, theme);
    apply(theme, button);
  });
}
