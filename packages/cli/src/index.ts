export { main, defaultRoot } from './main.js';
export { parseSize, parseDuration, formatSize, formatAgo } from './units.js';
