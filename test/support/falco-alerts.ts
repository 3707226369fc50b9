/**
 * A Falco JSON alert ("Terminal shell in container") numbered by `id`: `output_fields."test.id"`
 * carries the id and `proc.pid` is 1000 + id. `extra` is spliced into output_fields verbatim
 * (start it with a comma).
 */
export const shellAlertJson = (id: number, extra = ''): string =>
  `{"hostname":"node-a","output":"13:44:05.478445995: Critical shell ${id}","output_fields":{"container.id":"host","evt.time":1685022245478445995,"k8s.ns.name":null,"proc.pid":${1000 + id},"test.id":"${id}"${extra}},"priority":"Critical","rule":"Terminal shell in container","source":"syscall","tags":["shell"],"time":"2023-05-25T13:44:05.478445995Z"}`;
