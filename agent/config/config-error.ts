/** One problem found in a config stream, located by object and field so an operator can fix it. */
export interface ConfigError {
  /** The object, e.g. "Pod default/web", or the place when it has no usable name, e.g. "document 3". */
  object: string;
  /** Dotted path inside the object, e.g. "spec.nodeName"; empty for a problem with the whole object. */
  field: string;
  message: string;
}

/** `Pod default/web: spec.nodeName: must be a non-empty string` */
export function formatConfigError(e: ConfigError): string {
  return e.field === '' ? `${e.object}: ${e.message}` : `${e.object}: ${e.field}: ${e.message}`;
}
