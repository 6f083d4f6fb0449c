# mcpgw container image: build stage compiles TypeScript; the runtime stage holds production dependencies
# and dist/ only, and runs as the unprivileged "node" user. Not built in CI here (no Docker daemon).
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npx tsc -p tsconfig.json

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    MCPGW_DRAIN_DELAY_MS=5000 \
    MCPGW_LISTEN__HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY --from=build /src/deploy/demo ./deploy/demo
USER node
EXPOSE 8080
# Liveness through /healthz (readiness, /readyz, turns 503 while draining and is for the orchestrator).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.MCPGW_LISTEN__PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["start", "--config", "/etc/mcpgw/mcpgw.yaml"]
