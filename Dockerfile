# Weft node agent / control plane image. The BPF objects are compiled at build time.
FROM node:20-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends clang llvm libbpf-dev libelf-dev bpftool \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN node scripts/build.mjs && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libbpf1 iproute2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/weft
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# --max-semi-space-size, --no-parallel-scavenge: see agent/node-flags.ts; the heap limit is set by the DaemonSet (NODE_OPTIONS)
ENTRYPOINT ["node", "--max-semi-space-size=1", "--no-parallel-scavenge", "/opt/weft/dist/agent/cli.js"]
