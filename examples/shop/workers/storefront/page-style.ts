/** The page's stylesheet, inlined: the shop must render without any external asset. */
export const STYLE = `
:root {
  --ink: #1d2433; --muted: #5f6b7a; --line: #e3e7ee; --bg: #f6f7fb; --card: #fff;
  --accent: #3b5bdb; --accent-ink: #fff; --v1: #2f9e44; --v2: #ae3ec9; --warn: #e8590c;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg);
}
* { box-sizing: border-box; }
body { margin: 0; }
header { display: flex; align-items: center; justify-content: space-between; gap: 1rem;
  padding: 1rem 2rem; background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { margin: 0; font-size: 1.35rem; letter-spacing: .02em; }
header h1 span { color: var(--accent); }
.version { padding: .3rem .75rem; border-radius: 999px; color: #fff; font-size: .85rem; font-weight: 600; }
.version.v1 { background: var(--v1); } .version.v2 { background: var(--v2); }
main { display: grid; grid-template-columns: 1fr 22rem; gap: 2rem; padding: 2rem; max-width: 80rem; margin: 0 auto; }
@media (max-width: 860px) { main { grid-template-columns: 1fr; } }
.products { display: grid; grid-template-columns: repeat(auto-fill, minmax(13rem, 1fr)); gap: 1rem; align-content: start; }
.product { display: flex; flex-direction: column; gap: .4rem; padding: 1rem; background: var(--card);
  border: 1px solid var(--line); border-radius: .75rem; }
.product h2 { margin: 0; font-size: 1rem; }
.category { color: var(--muted); font-size: .75rem; text-transform: uppercase; letter-spacing: .08em; }
.price { font-size: 1.2rem; font-weight: 700; }
.stock { color: var(--muted); font-size: .85rem; }
.badges { display: flex; flex-wrap: wrap; gap: .3rem; min-height: 1.3rem; }
.badge { padding: .1rem .5rem; border-radius: 999px; background: #f3d9fa; color: #862e9c; font-size: .72rem; font-weight: 600; }
button { font: inherit; cursor: pointer; border: 0; border-radius: .5rem; padding: .55rem .9rem;
  background: var(--accent); color: var(--accent-ink); font-weight: 600; }
button:disabled { background: #c5ccd8; cursor: not-allowed; }
button.link { background: none; color: var(--muted); padding: 0 .25rem; font-weight: 400; }
.product button { margin-top: auto; }
aside { position: sticky; top: 1rem; align-self: start; padding: 1.25rem; background: var(--card);
  border: 1px solid var(--line); border-radius: .75rem; }
aside h2 { margin: 0 0 .75rem; font-size: 1.1rem; }
#lines { list-style: none; margin: 0; padding: 0; }
#lines li { display: flex; justify-content: space-between; gap: .5rem; padding: .45rem 0; border-bottom: 1px solid var(--line); font-size: .9rem; }
#lines .empty { color: var(--muted); border: 0; }
.total { display: flex; justify-content: space-between; margin: 1rem 0; font-weight: 700; font-size: 1.1rem; }
#place { width: 100%; }
#status { min-height: 1.5rem; margin-top: .75rem; font-size: .9rem; }
#status.error { color: var(--warn); }
footer { padding: 0 2rem 2rem; color: var(--muted); font-size: .8rem; text-align: center; }
`;
