import {
  createConfiguration, IsomorphicFetchHttpLibrary, ServerConfiguration, wrapHttpLibrary,
  type Configuration, type KubeConfig, type RequestContext, type ResponseContext,
} from '@kubernetes/client-node';

/**
 * API clients whose every call has a deadline. `kc.makeApiClient()` (@kubernetes/client-node 1.4.0)
 * sets none: a request on a connection that stalls without closing never settles, and whatever
 * awaits it stops for good, silently: an informer's relist, the look for a missing CRD, a status
 * write, a follower's read of the Lease (it would never take over). Here a call with no complete
 * answer within its deadline fails with an error that says so, and its caller's own retry runs.
 * (Watches are bounded separately: kube-watch.ts.)
 */

/** A list of every pod of a large cluster is the slowest call the control plane makes. */
export const API_REQUEST_TIMEOUT_MS = 60_000;

export function boundedApiClient<T>(kc: KubeConfig, apiType: new (config: Configuration) => T, timeoutMs = API_REQUEST_TIMEOUT_MS): T {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('No active cluster!');
  const fetchLibrary = new IsomorphicFetchHttpLibrary();
  const httpApi = wrapHttpLibrary({
    async send(request: RequestContext): Promise<ResponseContext> {
      // The signal also covers reading the body, which the generated client does after send().
      request.setSignal(AbortSignal.timeout(timeoutMs));
      const named = (error: unknown): unknown => ((error as Error)?.name === 'AbortError' ? noAnswer(request, timeoutMs) : error);
      const response = await fetchLibrary.send(request).toPromise().catch((error: unknown) => { throw named(error); });
      const { text, binary } = response.body;
      response.body = {
        text: () => text().catch((error: unknown) => { throw named(error); }),
        binary: () => binary().catch((error: unknown) => { throw named(error); }),
      };
      return response;
    },
  });
  return new apiType(createConfiguration({ baseServer: new ServerConfiguration(cluster.server, {}), authMethods: { default: kc }, httpApi }));
}

function noAnswer(request: RequestContext, timeoutMs: number): Error {
  const url = new URL(request.getUrl());
  return new Error(`no answer from the API server in ${timeoutMs / 1000} s (${request.getHttpMethod()} ${url.pathname})`);
}
