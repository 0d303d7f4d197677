/**
 * A Kubernetes UID as the kubelet names pod cgroups after it: a UUID, or for a static pod the
 * kubelet's config hash (hex). Checked before a UID becomes part of a cgroup path: no `/`, no `.`,
 * and no `_`, which the systemd spelling (`-` written `_`) would make ambiguous.
 */
const POD_UID = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,126}[A-Za-z0-9])?$/;

export function isPodUid(uid: string): boolean {
  return POD_UID.test(uid);
}
