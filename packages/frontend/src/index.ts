export { Frontend, type FrontendOptions, type BuildRequest, type BuildResult, type BuiltStep } from './build.js';
export { createProgress, type Progress, type ProgressMode, type Vertex } from './progress.js';
export { exportOCIArchive, type BuiltImage } from './image.js';
export { parseDockerfile, type Instruction } from './dockerfile/parse.js';
export { CONTAINER_PREFIX } from './runc.js';
export type { RegistryAccess } from './base.js';
