import os
import sys


def _taper_driver():
    # Runs inside the sandbox. Requests arrive on fd 3 as
    # [seq: u32 LE][len: u32 LE][utf-8 source]; each reply goes to fd 4 as
    # [seq: u32 LE][len: u32 LE][payload], the payload being
    # [kind: u8][exit code: i32 LE][error name][value], each string as
    # [present: u8][len: u32 LE][utf-8]. Output of the code goes to the real
    # stdout and stderr. Only `ast` is imported up front: the rest is needed
    # only when something goes wrong.
    import ast

    requests, replies = 3, 4
    main_pid = os.getpid()
    value_cap = int(sys.argv[1])
    # With a pid namespace, every process but this one was killed after the
    # previous call: wait for all of them, so that none still counts against
    # the process limit. Without one, processes may legitimately remain.
    wait_for_orphans = sys.argv[2] == "1"
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    sources = {}
    kinds = {"ok": 0, "exception": 1, "memory": 2, "exit": 3}

    def read_exact(n):
        chunks = []
        while n:
            chunk = os.read(requests, n)
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def write_all(data):
        view = memoryview(data)
        while view:
            view = view[os.write(replies, view):]

    def reap_orphans():
        flags = 0 if wait_for_orphans else os.WNOHANG
        while True:
            try:
                pid, _ = os.waitpid(-1, flags)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def flush():
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except BaseException:
                pass

    def print_error(exc):
        tb = exc.__traceback__
        while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell"):
            tb = tb.tb_next
        try:
            import linecache
            import traceback

            for name, source in sources.items():
                linecache.cache[name] = (len(source), None, source.splitlines(True), name)
            traceback.print_exception(type(exc), exc, tb, file=sys.__stderr__)
        except BaseException:
            try:
                os.write(2, ("%s: %s\n" % (type(exc).__name__, exc)).encode())
            except BaseException:
                pass

    def field(text):
        if text is None:
            return b"\0"
        data = text.encode("utf-8", "backslashreplace")
        return b"\1" + len(data).to_bytes(4, "little") + data

    def shorten(text):
        if len(text) > value_cap:
            dropped = len(text) - value_cap
            text = text[:value_cap] + "... [%d more characters]" % dropped
        return text

    def safe_repr(value):
        try:
            return shorten(repr(value))
        except BaseException as exc:
            return "<repr failed: %s>" % type(exc).__name__

    def run(source, name):
        sources[name] = source
        try:
            tree = ast.parse(source, name, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            body = compile(tree, name, "exec")
            tail = compile(last, name, "eval") if last is not None else None
        except BaseException as exc:
            print_error(exc)
            return "exception", None, type(exc).__name__, None
        try:
            exec(body, namespace)
            value = None
            if tail is not None:
                result = eval(tail, namespace)
                if result is not None:
                    value = safe_repr(result)
            return "ok", value, None, None
        except SystemExit as exc:
            code = exc.code
            if code is None:
                code = 0
            elif not isinstance(code, int):
                try:
                    print(code, file=sys.__stderr__)
                except BaseException:
                    pass
                code = 1
            return "exit", None, "SystemExit", max(-(2**31), min(code, 2**31 - 1))
        except MemoryError as exc:
            print_error(exc)
            return "memory", None, "MemoryError", None
        except BaseException as exc:
            print_error(exc)
            return "exception", None, type(exc).__name__, None

    cell = 0
    while True:
        header = read_exact(8)
        if header is None:
            os._exit(0)
        seq = int.from_bytes(header[:4], "little")
        body = read_exact(int.from_bytes(header[4:], "little"))
        if body is None:
            os._exit(0)
        cell += 1
        reap_orphans()
        kind, value, error, code = run(body.decode("utf-8", "replace"), "<cell %d>" % cell)
        flush()
        if os.getpid() != main_pid:
            # A process the code forked fell through to here: end it the way a
            # script's child would end, without answering the host.
            os._exit(code if kind == "exit" else (0 if kind == "ok" else 1))
        reply = (
            bytes([kinds[kind]])
            + (code or 0).to_bytes(4, "little", signed=True)
            + field(error)
            + field(value)
        )
        write_all(seq.to_bytes(4, "little") + len(reply).to_bytes(4, "little") + reply)


_taper_driver()
