/**
 * Which protocol a Service port declares, by Istio's rules (protocol selection): the port's
 * `appProtocol` first, else the prefix of its name (`http-web`, `grpc`, `tcp-db`; the bare name
 * counts too). `undefined` means nothing usable was declared and the proxy should sniff.
 */
export type AppProtocol = 'http1' | 'http2' | 'tcp';

/** Istio's protocol names (lower case) and what the node proxy serves for each. */
const BY_NAME: ReadonlyMap<string, AppProtocol> = new Map<string, AppProtocol>([
  ['http', 'http1'],
  ['grpc-web', 'http1'],
  ['http2', 'http2'],
  ['grpc', 'http2'],
  ['h2c', 'http2'],
  ['kubernetes.io/h2c', 'http2'],
  ['kubernetes.io/ws', 'http1'],
  // TLS the proxy cannot read, and protocols it has no HTTP parser for, travel as opaque TCP.
  ['https', 'tcp'],
  ['tls', 'tcp'],
  ['kubernetes.io/wss', 'tcp'],
  ['tcp', 'tcp'],
  ['mongo', 'tcp'],
  ['mysql', 'tcp'],
  ['redis', 'tcp'],
]);

/**
 * Istio rules: Service port appProtocol (`http`, `http2`, `grpc`, `grpc-web`, `tcp`,
 * `kubernetes.io/h2c`, `https`/`tls` = tcp (opaque), ...) first, else the port name prefix
 * (`http-*`, `http2-*`, `grpc-*`, `tcp-*`, ...; exactly the name `http` too), else undefined
 * (sniff). Matching ignores case, as Istio's does. An appProtocol Istio does not know falls back
 * to the name, as in Istio.
 */
export function declaredProtocol(port: { name?: string; appProtocol?: string }): AppProtocol | undefined {
  const app = port.appProtocol?.trim().toLowerCase();
  if (app) {
    const byApp = BY_NAME.get(app);
    if (byApp) return byApp;
  }
  const name = port.name?.trim().toLowerCase();
  if (!name) return undefined;
  // `grpc-web` is itself a protocol name containing the separator.
  if (name === 'grpc-web' || name.startsWith('grpc-web-')) return 'http1';
  const prefix = name.split('-', 1)[0]!;
  return BY_NAME.get(prefix);
}
