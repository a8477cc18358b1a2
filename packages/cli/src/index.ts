export { main } from './main.js';
export { parseSize, parseDuration, formatSize, formatAgo } from './units.js';
